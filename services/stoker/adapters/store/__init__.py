"""JobStore adapters: in-memory (tests), SQLite (embedded default), DynamoDB (production).

The SQLite and DynamoDB modules are imported from their own paths so that importing this
package does not pull in aiobotocore where only SQLite is used.
"""

from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.cursors import InvalidCursor
from stoker.core.store_rules import StoreFailure

__all__ = ["InvalidCursor", "MemoryJobStore", "StoreFailure"]
