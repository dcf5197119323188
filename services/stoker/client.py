"""The Python SDK: `stoker.AsyncClient` and `stoker.Client` over the HTTP API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from stoker.core.errors import JobNotFound, StokerError
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.retry import RetryPolicy
from stoker.core.spec import JobSpec

DEFAULT_URL = "http://127.0.0.1:8080"

SUBMIT_RETRY = RetryPolicy(
    initial_delay_s=0.5, multiplier=2, max_delay_s=5.0, jitter=0.2, max_attempts=4
)
"""A submit whose answer was lost (a timeout, a dropped connection) or that the API could
not take for a moment (502, 503, 504) is sent again this way. It carries a job id (the
client makes one when the spec has none), so a retry of a submit that did land is the same
job, not a second one."""

_RETRIABLE_STATUSES = frozenset({502, 503, 504})


class ApiError(StokerError):
    """The API refused a request. `problems` maps bad fields to what is wrong with them."""

    def __init__(self, status_code: int, body: Mapping[str, Any]) -> None:
        self.status_code = status_code
        self.error = str(body.get("error", "error"))
        self.problems = {p["field"]: p["problem"] for p in body.get("problems", [])}
        self.job_status = body.get("status")
        detail = "; ".join(f"{k}: {v}" for k, v in self.problems.items())
        super().__init__(f"HTTP {status_code}: {self.error}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True, slots=True)
class Submitted:
    job: JobRecord
    created: bool


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[JobRecord]
    next_cursor: str | None


def _spec_json(spec: JobSpec | Mapping[str, Any]) -> Any:
    return spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, JobSpec) else spec


def _with_job_id(spec: JobSpec | Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The submission's JSON with a job id: its own, or a new one (True) when it had none."""
    body = dict(_spec_json(spec))
    if body.get("job_id"):
        return body, False
    body["job_id"] = uuid.uuid4().hex
    return body, True


def _submit_retriable(error: BaseException) -> bool:
    if isinstance(error, ApiError):
        return error.status_code in _RETRIABLE_STATUSES
    return isinstance(
        error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    )


def _submitted(body: Any, generated_id: bool) -> Submitted:
    # A job under an id this call made up was made by this call, even when the answer
    # that said so was lost and a retry found it.
    return Submitted(JobRecord.model_validate(body["job"]), bool(body["created"]) or generated_id)


def _check(response: httpx.Response, job_id: str | None = None) -> Any:
    if response.status_code == 404 and job_id is not None:
        raise JobNotFound(job_id)
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        raise ApiError(response.status_code, body)
    return response.json()


def _list_params(
    status: JobStatus | str | None, owner: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = JobStatus(status).value
    if owner is not None:
        params["owner"] = owner
    if cursor is not None:
        params["cursor"] = cursor
    return params


class AsyncClient:
    """Async SDK. `async with AsyncClient(url) as c: await c.submit(spec)`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def submit(
        self, spec: JobSpec | Mapping[str, Any], *, retry: RetryPolicy = SUBMIT_RETRY
    ) -> Submitted:
        """Submit a job; a lost answer is retried with the same job id (`SUBMIT_RETRY`)."""
        payload, generated = _with_job_id(spec)
        async for attempt in retry.retrying(retry_on=_submit_retriable):
            with attempt:
                body = _check(await self._http.post("/v1/jobs", json=payload))
        return _submitted(body, generated)

    async def get(self, job_id: str) -> JobRecord:
        body = _check(await self._http.get(f"/v1/jobs/{job_id}"), job_id)
        return JobRecord.model_validate(body)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        params = _list_params(status, owner, limit, cursor)
        body = _check(await self._http.get("/v1/jobs", params=params))
        items = [JobRecord.model_validate(i) for i in body["items"]]
        return JobPage(items, body["next_cursor"])

    async def history(self, job_id: str) -> list[Transition]:
        body = _check(await self._http.get(f"/v1/jobs/{job_id}/history"), job_id)
        return [Transition.model_validate(t) for t in body]

    async def stop(self, job_id: str) -> JobRecord:
        body = _check(await self._http.post(f"/v1/jobs/{job_id}/stop"), job_id)
        return JobRecord.model_validate(body)

    async def wait(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0) -> JobRecord:
        """Poll until the job ends; raises TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = await self.get(job_id)
            if job.status.terminal:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout_s} s")
            await asyncio.sleep(poll_s)


class Client:
    """Blocking SDK with the same methods as AsyncClient."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self, spec: JobSpec | Mapping[str, Any], *, retry: RetryPolicy = SUBMIT_RETRY
    ) -> Submitted:
        """Submit a job; a lost answer is retried with the same job id (`SUBMIT_RETRY`)."""
        payload, generated = _with_job_id(spec)
        for attempt in retry.retrying_blocking(retry_on=_submit_retriable):
            with attempt:
                body = _check(self._http.post("/v1/jobs", json=payload))
        return _submitted(body, generated)

    def get(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(_check(self._http.get(f"/v1/jobs/{job_id}"), job_id))

    def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        params = _list_params(status, owner, limit, cursor)
        body = _check(self._http.get("/v1/jobs", params=params))
        return JobPage([JobRecord.model_validate(i) for i in body["items"]], body["next_cursor"])

    def history(self, job_id: str) -> list[Transition]:
        body = _check(self._http.get(f"/v1/jobs/{job_id}/history"), job_id)
        return [Transition.model_validate(t) for t in body]

    def stop(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(_check(self._http.post(f"/v1/jobs/{job_id}/stop"), job_id))

    def wait(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job.status.terminal:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout_s} s")
            time.sleep(poll_s)
