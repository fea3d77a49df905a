"""Switchboard social ingest: a webhook host for social DMs, SMS, chat and call transcripts."""
