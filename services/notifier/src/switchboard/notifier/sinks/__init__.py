"""The built-in sinks: Slack, Microsoft Teams, email over SMTP, signed webhooks, the agent inbox."""
