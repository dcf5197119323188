"""How stoker runs SQLite: the one threading model of the job store, the embedded event log
and the notifier's ledger (see `database` for the model, `lane` for how a call runs)."""

from stoker.adapters.sqlite.checkpoints import WalCheckpoint
from stoker.adapters.sqlite.database import SqliteDatabase, Synchronous, run_script
from stoker.adapters.sqlite.errors import translate

__all__ = ["SqliteDatabase", "Synchronous", "WalCheckpoint", "run_script", "translate"]
