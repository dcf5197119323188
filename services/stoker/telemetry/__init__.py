"""Metrics and traces of the service processes: counted by every layer above, served by the
composition root. Imports no broker, store or cloud client (docs/observability.md)."""
