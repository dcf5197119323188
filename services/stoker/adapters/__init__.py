"""Adapters: one sub-package per port, one module per technology.

Technology libraries (confluent-kafka, aiobotocore, sqlite3) are imported only by the module
that needs them, and their exceptions are translated into `stoker.core.errors` at that
module's edge, so nothing above the ports sees a foreign type.
"""
