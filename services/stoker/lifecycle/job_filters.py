"""Listing filters the store has no index for: instance type and a creation time range.

The store pages newest first by (created time, job id), so a time range costs nothing extra:
its end becomes the first page's cursor and the listing stops at the first job created before
its start. The instance type is matched on the jobs read, at most `SCAN_JOBS` of them per
request; a page may then come back short (even empty) with a cursor to read on, so a rare
instance type among 100,000 jobs never makes one request read them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from stoker.core.cursors import as_utc
from stoker.core.job import JobRecord
from stoker.core.store_rules import cursor_after, cursor_before
from stoker.core.trends import instance_type_of
from stoker.ports.store import Page

SCAN_JOBS = 5000
"""Jobs read at most per filtered request (in store pages of up to 500)."""

ListPage = Callable[[str | None, int], Awaitable[Page]]
"""The store's listing with the indexed filters bound: (cursor, limit) -> page."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a listing keeps beyond the indexed filters (status, owner, team)."""

    instance_type: str | None = None
    created_since: datetime | None = None
    """Jobs created at or after this time."""
    created_until: datetime | None = None
    """Jobs created at or before this time."""

    def __post_init__(self) -> None:
        if (
            self.created_since is not None
            and self.created_until is not None
            and as_utc(self.created_until) < as_utc(self.created_since)
        ):
            raise ValueError(
                f"created_until ({self.created_until.isoformat()}) is before created_since "
                f"({self.created_since.isoformat()})"
            )

    @property
    def empty(self) -> bool:
        return self.instance_type is None and self.created_since is None

    def keeps(self, job: JobRecord) -> bool:
        return self.instance_type is None or instance_type_of(job) == self.instance_type


async def filtered_page(
    list_page: ListPage, wanted: JobFilter, *, limit: int, cursor: str | None
) -> Page:
    """Up to `limit` jobs passing `wanted`, newest first, and the cursor to read on."""
    if cursor is None and wanted.created_until is not None:
        cursor = cursor_before(wanted.created_until)
    if wanted.empty:
        return await list_page(cursor, limit)
    since = as_utc(wanted.created_since) if wanted.created_since is not None else None
    kept: list[JobRecord] = []
    scanned = 0
    while True:
        page = await list_page(cursor, 500 if wanted.instance_type else limit)
        for job in page.items:
            scanned += 1
            if since is not None and as_utc(job.created_at) < since:
                return Page(items=kept, next_cursor=None)  # older than the range: done
            if wanted.keeps(job):
                kept.append(job)
                if len(kept) == limit:
                    more = page.next_cursor is not None or job is not page.items[-1]
                    return Page(items=kept, next_cursor=cursor_after(job) if more else None)
        if page.next_cursor is None:
            return Page(items=kept, next_cursor=None)
        cursor = page.next_cursor
        if scanned >= SCAN_JOBS:
            return Page(items=kept, next_cursor=cursor)
