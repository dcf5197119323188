"""A local webhook receiver that counts notifications per job and idempotency key.

It runs on a thread with its own HTTP server (standard library), so it serves whatever event
loop the test uses and keeps answering while the test blocks on anything else.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivery:
    key: str
    jobs: tuple[tuple[str, str], ...]
    """(job id, state) of every job the message reports (a digest reports several)."""
    notes: tuple[dict[str, Any], ...] = ()
    """What the message says about each job, as received."""


class WebhookReceiver:
    """`with WebhookReceiver() as r:` then point targets at `r.url`; 200 for every POST."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        record = self._record

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key") or str(body.get("idempotency_key"))
                jobs = tuple((str(j["job_id"]), str(j["state"])) for j in body.get("jobs", []))
                record(Delivery(key, jobs, tuple(body.get("jobs", []))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # one line per delivery would drown the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def keys_per_job(self) -> dict[str, set[str]]:
        """Distinct idempotency keys under which each job was reported."""
        seen: dict[str, set[str]] = {}
        for delivery in self.deliveries:
            for job_id, _state in delivery.jobs:
                seen.setdefault(job_id, set()).add(delivery.key)
        return seen

    def deliveries_per_job(self) -> Counter[str]:
        """Raw count of messages that reported each job, repeats included."""
        return Counter(job_id for d in self.deliveries for job_id, _ in d.jobs)

    def states(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for delivery in self.deliveries:
            for job_id, state in delivery.jobs:
                seen.setdefault(job_id, set()).add(state)
        return seen

    def notes(self) -> list[dict[str, Any]]:
        """Every job report of every message received, repeats included."""
        return [note for delivery in self.deliveries for note in delivery.notes]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
