"""Switchboard email ingest: SMTP listener, inbound-email webhooks, one normalization."""
