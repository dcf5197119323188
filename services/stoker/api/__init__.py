"""The HTTP API: submit, inspect and stop jobs."""
