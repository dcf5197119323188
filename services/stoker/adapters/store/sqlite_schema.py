"""The SQLite job store's schema: tables, indexes and the migrations of older files.

`migrate` runs once when a store starts, inside a write transaction, so two processes
opening a new file at once create it once, and a migration is never applied twice.
"""

from __future__ import annotations

import sqlite3

from stoker.adapters.sqlite import run_script
from stoker.adapters.store import sqlite_slots

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        job_id      TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        team        TEXT NOT NULL DEFAULT 'default',
        status      TEXT NOT NULL,
        version     INTEGER NOT NULL,
        created_key TEXT NOT NULL,
        due_key     TEXT,
        record      TEXT NOT NULL
    )
    """,
    # One index per `list_jobs` filter, each already in newest-first order.
    "CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_key, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_key, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_key, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_owner_status ON jobs (owner, status, created_key, job_id)",
    # Partial: only jobs waiting for a retry carry a due time.
    "CREATE INDEX IF NOT EXISTS jobs_by_due ON jobs (due_key, job_id) WHERE due_key IS NOT NULL",
    """
    CREATE TABLE IF NOT EXISTS history (
        job_id    TEXT NOT NULL,
        version   INTEGER NOT NULL,
        to_status TEXT NOT NULL,
        at_key    TEXT NOT NULL,
        reason    TEXT,
        line      TEXT NOT NULL,
        PRIMARY KEY (job_id, version)
    )
    """,
    "CREATE INDEX IF NOT EXISTS history_by_time ON history (at_key, to_status)",
    """
    CREATE TABLE IF NOT EXISTS tokens (
        token_id    TEXT PRIMARY KEY,
        created_key TEXT NOT NULL,
        record      TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        topic    TEXT NOT NULL,
        event    BLOB NOT NULL,
        event_id TEXT
    )
    """,
)

OUTBOX_EVENT_ID = (
    "ALTER TABLE outbox ADD COLUMN event_id TEXT",
    "UPDATE outbox SET event_id = json_extract(CAST(event AS TEXT), '$.id') WHERE event_id IS NULL",
)
"""Files written before outbox entries were named by their event id get the column; old
rows take the id from the stored event."""

OUTBOX_INDEX = "CREATE INDEX IF NOT EXISTS outbox_by_event ON outbox (event_id)"

JOB_TEAM = "ALTER TABLE jobs ADD COLUMN team TEXT NOT NULL DEFAULT 'default'"
"""Files written before jobs had teams: their jobs belong to the default team (the record's
JSON lacks the field, and JobRecord's default says the same)."""

TEAM_INDEXES = (
    # A caller scoped to its team lists from these, never from other teams' rows.
    "CREATE INDEX IF NOT EXISTS jobs_by_team ON jobs (team, created_key, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_team_status ON jobs (team, status, created_key, job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_team_owner ON jobs (team, owner, created_key, job_id)",
)

TREND_COUNTS = """
    CREATE TABLE trend_counts (
        team   TEXT NOT NULL,
        day    TEXT NOT NULL,
        kind   TEXT NOT NULL,
        name   TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (team, day, kind, name)
    )
    """
"""The counters of `stoker.core.trends`, per team and UTC day."""

TREND_COUNTS_FROM_HISTORY = (
    # A file from before the counters: statuses and retries are recounted from its history
    # (times to completion and billable time only count from the upgrade on).
    "INSERT INTO trend_counts (team, day, kind, name, amount)"
    " SELECT jobs.team, substr(history.at_key, 1, 10), 'S', history.to_status, count(*)"
    " FROM history JOIN jobs USING (job_id) GROUP BY 1, 2, 4",
    "INSERT INTO trend_counts (team, day, kind, name, amount)"
    " SELECT jobs.team, substr(history.at_key, 1, 10), 'R',"
    " coalesce(history.reason, 'unspecified'), count(*)"
    " FROM history JOIN jobs USING (job_id) WHERE history.to_status = 'RetryScheduled'"
    " GROUP BY 1, 2, 4",
)


def migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing and upgrade an older file (inside the caller's transaction)."""
    run_script(conn, TABLES)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    if "event_id" not in columns:
        run_script(conn, OUTBOX_EVENT_ID)
    conn.execute(OUTBOX_INDEX)
    if "team" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:
        conn.execute(JOB_TEAM)
    run_script(conn, TEAM_INDEXES)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "trend_counts" not in tables:
        conn.execute(TREND_COUNTS)
        run_script(conn, TREND_COUNTS_FROM_HISTORY)
    # Every team's trends (an admin's) read a range of days.
    conn.execute("CREATE INDEX IF NOT EXISTS trend_counts_by_day ON trend_counts (day)")
    run_script(conn, sqlite_slots.TABLES)
