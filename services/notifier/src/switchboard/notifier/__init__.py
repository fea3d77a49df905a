"""Switchboard notifier: delivers dispatches to the tools agents use and takes their answers back."""
