"""The embedded log's schema (see `sqlite_log` for what each table is for).

`migrate` runs once when a bus starts, inside a write transaction, so processes opening a
new file at once create it once.
"""

from __future__ import annotations

import sqlite3

from stoker.adapters.sqlite import run_script

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS topics (
        topic TEXT PRIMARY KEY,
        partitions INTEGER NOT NULL CHECK (partitions > 0)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        headers TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (topic, partition, offset)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS heads (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS group_offsets (
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS members (
        grp TEXT NOT NULL,
        member TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (grp, member)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS leases (
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        member TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (grp, topic, partition)
    )
    """,
)


MEMBER_PROCESS = (
    "ALTER TABLE members ADD COLUMN host TEXT",
    "ALTER TABLE members ADD COLUMN pid INTEGER",
    "ALTER TABLE members ADD COLUMN pid_started REAL",
)
"""Which process a member is (`stoker.adapters.processes.host_id`, pid, start time), so a
member on the same host can tell it died without waiting for its lease to run out. Files
written before have none: their members are left to expire; a member written by a version
that does not know the columns has NULLs there, read the same way."""


def migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing and upgrade an older file (inside the caller's transaction)."""
    run_script(conn, TABLES)
    if "host" not in {row[1] for row in conn.execute("PRAGMA table_info(members)")}:
        run_script(conn, MEMBER_PROCESS)
