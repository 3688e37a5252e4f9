"""Prefect wiring for copydesk: thin flows and tasks over the `copydesk` library."""
