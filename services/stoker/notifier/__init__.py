"""The notifier service: exactly one message per terminal job and target, digests for
storms, Slack, SNS email, signed webhooks, console and file.

Public surface: `run_notifier`, `Notifier`, `NotifySettings`, the ledger port and its
adapters' names, and the channel port. Everything else is private to the package.
"""

from stoker.notifier.channels import Channel, DeliveryDeferred, DeliveryError, DeliveryRejected
from stoker.notifier.config import NotifySettings, load_notify_settings
from stoker.notifier.digest import DigestPolicy
from stoker.notifier.ledger import EntryStatus, LedgerEntry, NotificationLedger
from stoker.notifier.ledger_memory import MemoryLedger
from stoker.notifier.message import ConsoleTarget, FileTarget, JobNote, Notification
from stoker.notifier.service import CONSUMER_GROUP, TERMINAL_TOPICS, Notifier, run_notifier

__all__ = [
    "CONSUMER_GROUP",
    "TERMINAL_TOPICS",
    "Channel",
    "ConsoleTarget",
    "DeliveryDeferred",
    "DeliveryError",
    "DeliveryRejected",
    "DigestPolicy",
    "EntryStatus",
    "FileTarget",
    "JobNote",
    "LedgerEntry",
    "MemoryLedger",
    "Notification",
    "NotificationLedger",
    "Notifier",
    "NotifySettings",
    "load_notify_settings",
    "run_notifier",
]
