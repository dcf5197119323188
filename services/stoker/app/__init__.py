"""The composition root: wiring, entry points and deployment adapters."""
