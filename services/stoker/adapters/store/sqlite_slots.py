"""The SQLite store's shared capacity: slots and leases (the CapacityStore port).

A claim reads the type's count and the jobs' slots and writes the new ones inside the same
`BEGIN IMMEDIATE` group transaction, so claims from several processes sharing the file are
serialized by the file's write lock and never hold more slots than the cap between them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from stoker.adapters.sqlite import SqliteDatabase
from stoker.adapters.store.slot_rules import check_claim, check_ttl, plan_claims
from stoker.core.cursors import time_key
from stoker.ports.capacity import HeldSlot, Lease, SlotClaim, SlotsClaimed

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS slots (
        job_id        TEXT PRIMARY KEY,
        instance_type TEXT NOT NULL,
        attempt       INTEGER NOT NULL,
        owner         TEXT NOT NULL,
        claimed_at    TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS slots_by_type ON slots (instance_type)",
    """
    CREATE TABLE IF NOT EXISTS leases (
        name        TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        expires_key TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    )
    """,
)


def _held(row: tuple[str, str, int, str, str]) -> HeldSlot:
    instance_type, job_id, attempt, owner, claimed_at = row
    return HeldSlot(instance_type, job_id, int(attempt), owner, datetime.fromisoformat(claimed_at))


def _row(slot: HeldSlot) -> tuple[str, str, int, str, str]:
    return (slot.instance_type, slot.job_id, slot.attempt, slot.owner, slot.claimed_at.isoformat())


_SLOT_COLUMNS = "instance_type, job_id, attempt, owner, claimed_at"


class SqliteSlots:
    """CapacityStore operations over the `slots` and `leases` tables of a store's file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def claim_slots(
        self,
        instance_type: str,
        cap: int,
        claims: Sequence[SlotClaim],
        *,
        owner: str,
        at: datetime,
        take_from: Collection[str] = (),
    ) -> SlotsClaimed:
        check_claim(instance_type, cap)
        ids = json.dumps([claim.job_id for claim in claims])

        def count(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT COUNT(*) FROM slots WHERE instance_type = ?", (instance_type,)
            ).fetchone()
            return int(row[0])

        if not claims:
            return SlotsClaimed(in_use=await self._db.read("count_slots", count))

        def op(db: sqlite3.Connection) -> SlotsClaimed:
            in_use = count(db)
            held = {
                row[1]: _held(row)
                for row in db.execute(
                    f"SELECT {_SLOT_COLUMNS} FROM slots"
                    " WHERE job_id IN (SELECT value FROM json_each(?))",
                    (ids,),
                )
            }
            plan = plan_claims(
                instance_type,
                cap,
                claims,
                held,
                in_use=in_use,
                owner=owner,
                at=at,
                take_from=take_from,
            )
            db.executemany(
                f"INSERT OR REPLACE INTO slots ({_SLOT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [_row(write.slot) for write in plan.writes],
            )
            return plan.result

        return await self._db.write("claim_slots", op)

    async def release_slots(self, releases: Sequence[SlotClaim]) -> int:
        if not releases:
            return 0
        rows = [(release.job_id, release.attempt) for release in releases]

        def op(db: sqlite3.Connection) -> int:
            freed = 0
            for job_id, attempt in rows:
                freed += db.execute(
                    "DELETE FROM slots WHERE job_id = ? AND attempt <= ?", (job_id, attempt)
                ).rowcount
            return freed

        return await self._db.write("release_slots", op)

    async def held_slots(self, instance_type: str | None = None) -> list[HeldSlot]:
        def op(db: sqlite3.Connection) -> list[tuple[str, str, int, str, str]]:
            if instance_type is None:
                return db.execute(f"SELECT {_SLOT_COLUMNS} FROM slots").fetchall()
            return db.execute(
                f"SELECT {_SLOT_COLUMNS} FROM slots WHERE instance_type = ?",
                (instance_type,),
            ).fetchall()

        return [_held(row) for row in await self._db.read("held_slots", op)]

    async def take_lease(self, name: str, owner: str, *, now: datetime, ttl_s: float) -> bool:
        check_ttl(ttl_s)
        expires = now + timedelta(seconds=ttl_s)
        row = (name, owner, time_key(expires), expires.isoformat())
        now_key = time_key(now)

        def op(db: sqlite3.Connection) -> bool:
            # One statement: the row is written when absent, or when the stored one is this
            # owner's or has expired.
            return (
                db.execute(
                    "INSERT INTO leases (name, owner, expires_key, expires_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " owner = excluded.owner, expires_key = excluded.expires_key,"
                    " expires_at = excluded.expires_at"
                    " WHERE leases.owner = excluded.owner OR leases.expires_key <= ?",
                    (*row, now_key),
                ).rowcount
                == 1
            )

        return await self._db.write("take_lease", op)

    async def leases(self, prefix: str) -> list[Lease]:
        def op(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
            return db.execute(
                "SELECT name, owner, expires_at FROM leases WHERE substr(name, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()

        rows = await self._db.read("leases", op)
        return [Lease(name, owner, datetime.fromisoformat(at)) for name, owner, at in rows]

    async def drop_lease(self, name: str, owner: str) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

        await self._db.write("drop_lease", op)
