"""The Python SDK: `stoker.AsyncClient` and `stoker.Client` over the HTTP API.

Every call but the health check sends `Authorization: Bearer <token>`. The token, when not
given, is looked up in this order (`find_token`):
1. the `STOKER_TOKEN` environment variable;
2. `token = "..."` in the config file: `$STOKER_CONFIG`, else
   `$XDG_CONFIG_HOME/stoker/config.toml` (`~/.config/stoker/config.toml`);
3. the file the embedded default writes at `stoker up` and `stoker demo`:
   `$STOKER_DATA_DIR/api-token` (`.stoker/api-token`).
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx

from stoker.boto_auth import use_bearer_token
from stoker.core.errors import ConfigurationError, JobNotFound, StokerError
from stoker.core.events import CloudEvent, decode_event
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.retry import RetryPolicy
from stoker.core.retry_after import parse_retry_after
from stoker.core.spec import JobSpec

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_FILE_NAME = "api-token"
"""The embedded default's token, in its data folder (mode 0600)."""
EVENTS_READ_TIMEOUT_S = 60.0
"""An event stream silent this long is dead: the API sends a keep-alive every 15 s."""


def config_path() -> Path:
    """The config file: `$STOKER_CONFIG`, else `$XDG_CONFIG_HOME/stoker/config.toml`."""
    if os.environ.get("STOKER_CONFIG"):
        return Path(os.environ["STOKER_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stoker" / "config.toml"


def token_file(data_dir: Path | str | None = None) -> Path:
    """Where the embedded default keeps its token: `<data dir>/api-token`."""
    return Path(data_dir or os.environ.get("STOKER_DATA_DIR") or ".stoker") / TOKEN_FILE_NAME


def find_token() -> str | None:
    """The caller's token: STOKER_TOKEN, the config file's `token`, the embedded default's
    token file, in that order; None when none has one."""
    if os.environ.get("STOKER_TOKEN", "").strip():
        return os.environ["STOKER_TOKEN"].strip()
    config = config_path()
    if config.is_file():
        try:
            value = tomllib.loads(config.read_text(encoding="utf-8")).get("token")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read {config}: {exc}") from exc
        if isinstance(value, str) and value.strip():
            return value.strip()
    path = token_file()
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    return None


def _headers(token: str | None) -> dict[str, str]:
    """The Authorization header: `token`, or `find_token()`'s when None (an empty token
    sends none)."""
    found = find_token() if token is None else token.strip()
    return {"Authorization": f"Bearer {found}"} if found else {}


SUBMIT_RETRY = RetryPolicy(
    initial_delay_s=0.5, multiplier=2, max_delay_s=5.0, jitter=0.2, max_attempts=4
)
"""A submit whose answer was lost (a timeout, a dropped connection), that the API could
not take for a moment (502, 503, 504), or that was over the caller's rate (429 with a
Retry-After, waited as asked up to `max_delay_s`) is sent again this way. A 429 without
Retry-After (a team at its quota of jobs in flight) is not: that clears only as jobs end. A
submit carries a job id (the client makes one when the spec has none), so a retry of a
submit that did land is the same job, not a second one."""

_RETRIABLE_STATUSES = frozenset({502, 503, 504})


class ApiError(StokerError):
    """The API refused a request. `problems` maps bad fields to what is wrong with them;
    `retry_after_s` is the wait the answer's Retry-After asked for, if it had one."""

    def __init__(
        self, status_code: int, body: Mapping[str, Any], *, retry_after_s: float | None = None
    ) -> None:
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.error = str(body.get("error", "error"))
        self.problems = {p["field"]: p["problem"] for p in body.get("problems", [])}
        self.job_status = body.get("status")
        detail = "; ".join(f"{k}: {v}" for k, v in self.problems.items())
        hint = (
            " (give a token: STOKER_TOKEN, or `token` in the stoker config file)"
            if status_code == 401
            else ""
        )
        super().__init__(
            f"HTTP {status_code}: {self.error}" + (f" ({detail})" if detail else "") + hint
        )


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
        if error.status_code == 429:
            return error.retry_after_s is not None
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
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        raise ApiError(response.status_code, body, retry_after_s=retry_after_s)
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


def _event_params(
    types: Iterable[str], all_topics: bool, from_beginning: bool
) -> httpx.QueryParams:
    params: list[tuple[str, str | int | float | bool | None]] = [("type", t) for t in types]
    if all_topics:
        params.append(("all", "true"))
    if from_beginning:
        params.append(("from_beginning", "true"))
    return httpx.QueryParams(params)


class _EventParser:
    """Server-sent events, line by line: a blank line ends an event; only `data` matters
    (the CloudEvent carries its own id and type); comment lines are keep-alives."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> CloudEvent | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line == "" and self._data:
            text, self._data = "\n".join(self._data), []
            return decode_event(text.encode("utf-8"))
        return None


class AsyncClient:
    """Async SDK. `async with AsyncClient(url) as c: await c.submit(spec)`.

    `token`: the bearer token; by default `find_token()`'s."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, transport=transport, headers=_headers(token)
        )

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

    async def events(
        self,
        *,
        types: Iterable[str] = (),
        all_topics: bool = False,
        from_beginning: bool = False,
    ) -> AsyncIterator[CloudEvent]:
        """Events of your team's jobs as they happen (GET /v1/events), until the server
        ends the stream. `all_topics` adds every transition and notification."""
        params = _event_params(types, all_topics, from_beginning)
        timeout = httpx.Timeout(self._http.timeout.connect, read=EVENTS_READ_TIMEOUT_S)
        async with self._http.stream("GET", "/v1/events", params=params, timeout=timeout) as r:
            if r.status_code >= 400:
                await r.aread()
                _check(r)
            parser = _EventParser()
            async for line in r.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

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


class _BlockingHttp:
    """One blocking HTTP connection pool to the API, carrying the bearer token."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout_s, transport=transport, headers=_headers(token)
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()


class Client(_BlockingHttp):
    """Blocking SDK with the same methods as AsyncClient."""

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

    def events(
        self,
        *,
        types: Iterable[str] = (),
        all_topics: bool = False,
        from_beginning: bool = False,
    ) -> Iterator[CloudEvent]:
        params = _event_params(types, all_topics, from_beginning)
        timeout = httpx.Timeout(self._http.timeout.connect, read=EVENTS_READ_TIMEOUT_S)
        with self._http.stream("GET", "/v1/events", params=params, timeout=timeout) as r:
            if r.status_code >= 400:
                r.read()
                _check(r)
            parser = _EventParser()
            for line in r.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def wait(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job.status.terminal:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout_s} s")
            time.sleep(poll_s)


def send_bearer_token(boto_client: Any, token: str | None = None) -> None:
    """Make a boto3 (or botocore) client send `Authorization: Bearer <token>` on every
    request, which is how a `sagemaker-runtime` client authenticates to `stoker endpoints
    serve`. `token` None: `find_token()`.

    The header is set just before the request is sent, after botocore signed it (or did not:
    a client made with `Config(signature_version=botocore.UNSIGNED)` needs no AWS
    credentials at all); the hook is the client's own, so other clients are unchanged.
    """
    token = token or find_token()
    if not token:
        raise ConfigurationError(
            "no token: pass one, set STOKER_TOKEN or create one with `stoker auth token create`"
        )
    use_bearer_token(boto_client.meta.events, token, event="before-send")


class PipelinesClient(_BlockingHttp):
    """Blocking client of the pipeline, execution and schedule routes; answers are the
    API's JSON (see /openapi.json). ApiError for a refusal (404 for an unknown name or id,
    422 naming each bad step and field)."""

    def upsert(
        self, name: str, definition: Mapping[str, Any] | str, description: str | None = None
    ) -> Any:
        body = {"definition": definition, "description": description}
        return _check(self._http.put(f"/v1/pipelines/{name}", json=body))

    def list_pipelines(self) -> Any:
        return _check(self._http.get("/v1/pipelines"))

    def describe(self, name: str) -> Any:
        return _check(self._http.get(f"/v1/pipelines/{name}"))

    def delete(self, name: str) -> Any:
        return _check(self._http.delete(f"/v1/pipelines/{name}"))

    def start(self, name: str, parameters: Mapping[str, Any] | None = None) -> Any:
        body = {"parameters": dict(parameters or {})}
        return _check(self._http.post(f"/v1/pipelines/{name}/executions", json=body))

    def executions(
        self,
        name: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> Any:
        """A page of the pipeline's executions: `{"items": [...], "next_cursor": ...}`."""
        params: dict[str, Any] = {"limit": limit, "oldest_first": oldest_first}
        if cursor is not None:
            params["cursor"] = cursor
        return _check(self._http.get(f"/v1/pipelines/{name}/executions", params=params))

    def execution(self, execution_id: str) -> Any:
        return _check(self._http.get(f"/v1/executions/{execution_id}"))

    def stop_execution(self, execution_id: str) -> Any:
        return _check(self._http.post(f"/v1/executions/{execution_id}/stop"))

    def wait(self, execution_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0) -> Any:
        """The execution once it has ended; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.execution(execution_id)
            if found["status"] in ("Succeeded", "Failed", "Stopped"):
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"execution {execution_id} still {found['status']}")
            time.sleep(poll_s)

    def put_schedule(
        self,
        name: str,
        pipeline: str,
        expression: str,
        *,
        start_date: str | None = None,
        allow_overlap: bool = False,
        catch_up: bool = False,
    ) -> Any:
        body = {
            "pipeline": pipeline,
            "expression": expression,
            "start_date": start_date,
            "allow_overlap": allow_overlap,
            "catch_up": catch_up,
        }
        return _check(self._http.put(f"/v1/schedules/{name}", json=body))

    def schedules(self) -> Any:
        return _check(self._http.get("/v1/schedules"))

    def pause_schedule(self, name: str) -> Any:
        return _check(self._http.post(f"/v1/schedules/{name}/pause"))

    def resume_schedule(self, name: str) -> Any:
        return _check(self._http.post(f"/v1/schedules/{name}/resume"))

    def delete_schedule(self, name: str) -> None:
        response = self._http.delete(f"/v1/schedules/{name}")
        if response.status_code >= 400:
            _check(response)
