"""Switchboard's shared core: event schema, settings, logging, metrics, Kafka helpers and runtime."""

__version__ = "0.1.0"
