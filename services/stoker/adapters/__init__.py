"""Adapters: one sub-package per port (bus, store, training, notifier, inference), one module
per technology, plus shared plumbing for a technology used by several ports (`aws`, `sqlite`).

Technology libraries (confluent-kafka, aiobotocore, sqlite3) are imported only by the module
that needs them, and their exceptions are translated into `stoker.core.errors` at that
module's edge, so nothing above the ports sees a foreign type.
"""
