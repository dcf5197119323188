"""The notifier service: exactly one message per terminal job and target, digests for
storms, Slack, SNS email, signed webhooks, console and file.

Public surface: `Notifier`, `NotifySettings`, and the names of the ledger and channel
ports. The adapters live in `stoker.adapters.notifier`; `stoker.app.notifier.run_notifier`
runs the service.
"""

from stoker.core.notification import ConsoleTarget, FileTarget, JobNote, Notification
from stoker.notifier.config import NotifySettings, load_notify_settings
from stoker.notifier.digest import DigestPolicy
from stoker.notifier.service import CONSUMER_GROUP, TERMINAL_TOPICS, Notifier
from stoker.ports.channel import Channel, DeliveryDeferred, DeliveryError, DeliveryRejected
from stoker.ports.ledger import EntryStatus, LedgerEntry, NotificationLedger

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
    "Notification",
    "NotificationLedger",
    "Notifier",
    "NotifySettings",
    "load_notify_settings",
]
