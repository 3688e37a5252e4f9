"""copydesk_flows: Prefect wiring for copydesk, thin flows and tasks over the `copydesk` library.

This folder (`flows/` in the repository) is installed under copydesk's own name,
`copydesk_flows`. It imports the core library and Prefect, never the CLI.
"""
