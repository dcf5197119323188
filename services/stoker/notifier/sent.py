"""What the ledger says was sent about one job: the dashboard's "notifications sent".

The ledger keys an entry by (job, terminal status, target), and the targets a job notifies
are decided from its stored spec and the notifier's settings (`targets.resolve`), so the
entries of one job are found by key, a few reads, with no index over jobs. Targets are shown
as `redaction.describe` shows them in logs: never a secret.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from stoker.core.job import JobRecord
from stoker.core.redaction import redact_text
from stoker.notifier.config import NotifySettings
from stoker.notifier.redaction import describe
from stoker.notifier.targets import resolve, spec_targets
from stoker.ports.ledger import EntryStatus, NotificationLedger, entry_id_for


class SentNotification(BaseModel):
    channel: str = Field(description="slack, email, webhook, console or file")
    target: str = Field(description="a redacted description of the target")
    status: EntryStatus | None = Field(description="pending, sent or failed; null: not owed yet")
    updated_at: datetime | None = None
    failure_reason: str | None = None


class JobNotifications:
    """Reads one job's ledger entries."""

    def __init__(
        self, ledger: NotificationLedger, settings: NotifySettings, fallback_file: str
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._fallback_file = fallback_file

    async def of(self, job: JobRecord) -> list[SentNotification]:
        """The job's notifications once it has ended (`job` as stored: its targets' secret
        references decide the ledger keys); nothing before."""
        if not job.status.terminal:
            return []
        targets = resolve(spec_targets(job.spec), job.owner, self._settings, self._fallback_file)
        found: list[SentNotification] = []
        for target in targets:
            entry = await self._ledger.get(entry_id_for(job.job_id, job.status, target))
            found.append(
                SentNotification(
                    channel=target.kind,
                    target=describe(target),
                    status=entry.status if entry else None,
                    updated_at=(entry.updated_at or entry.created_at) if entry else None,
                    failure_reason=redact_text(entry.failure_reason)
                    if entry and entry.failure_reason
                    else None,
                )
            )
        return found
