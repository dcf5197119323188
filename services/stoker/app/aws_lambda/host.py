"""One Lambda process: its settings, an event loop kept between invocations, and a runtime
(store, bus, training backend) opened at the first invocation and reused while the process
stays warm.

Clients are opened once per process rather than per invocation, as AWS advises: opening the
store and the bus describes the tables, which would otherwise cost several control-plane
calls on every batch. The lifecycle objects themselves (Launcher, Monitor, Retrier,
Notifier) are made anew for every invocation from what the store says, so nothing one
invocation learnt outlives it; whatever is still running when an invocation ends is
cancelled, and the store's conditional writes let the next invocation take over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stoker.app.runtime import Runtime
from stoker.core.clock import Clock
from stoker.core.errors import ConfigurationError
from stoker.logs import configure_logging
from stoker.ports.training import TrainingBackend
from stoker.settings import Mode, Settings, load_settings

T = TypeVar("T")

log = structlog.get_logger("stoker.app.aws_lambda")

DEFAULT_TIME_LEFT_S = 60.0
"""Time an invocation may take when no Lambda context tells (a local call)."""


class LambdaSettings(BaseSettings):
    """Settings of the Lambda adapters only (prefix STOKER_LAMBDA_)."""

    model_config = SettingsConfigDict(env_prefix="STOKER_LAMBDA_", extra="ignore", frozen=True)

    owner_claim: str = Field(
        default="sub", min_length=1, description="the JWT claim that names a job's owner"
    )
    deadline_margin_s: float = Field(
        default=10.0,
        ge=0,
        description="time kept back from the function's timeout to report a partial batch",
    )


def load_lambda_settings() -> LambdaSettings:
    try:
        return LambdaSettings()
    except ValidationError as exc:
        problems = [
            f"STOKER_LAMBDA_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc


class LambdaContext(Protocol):
    """The part of the Lambda context object the handlers use."""

    def get_remaining_time_in_millis(self) -> int: ...


class Deadline:
    """When an invocation's work must stop, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + max(0.0, seconds)

    @classmethod
    def of(cls, context: LambdaContext | None, margin_s: float) -> Deadline:
        """The function's timeout less `margin_s`, kept to report what was done."""
        if context is None:
            return cls(DEFAULT_TIME_LEFT_S)
        return cls(context.get_remaining_time_in_millis() / 1000 - margin_s)

    def left_s(self) -> float:
        return max(0.0, self._at - time.monotonic())


class LambdaHost:
    """Runs each invocation's work on one event loop, with a runtime opened at first use.

    `settings` defaults to the environment (read at the first invocation, so a bad setting
    fails that invocation with a message naming it). `with_backend`: the handler calls the
    training backend (SageMaker). `backend` and `clock` replace the built ones (tests).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        with_backend: bool = False,
        backend: TrainingBackend | None = None,
        clock: Clock | None = None,
        lambda_settings: LambdaSettings | None = None,
    ) -> None:
        self._settings = settings
        self._lambda_settings = lambda_settings
        self._with_backend = with_backend
        self._backend = backend
        self._clock = clock
        self._runner: asyncio.Runner | None = None
        self._runtime: Runtime | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            configure_logging(self._settings.log_level, json=self._settings.log_json)
            if self._settings.mode is not Mode.DYNAMODB:
                raise ConfigurationError(
                    f"STOKER_MODE: the Lambda handlers run in dynamodb mode "
                    f"(got {self._settings.mode.value!r})"
                )
        return self._settings

    @property
    def lambda_settings(self) -> LambdaSettings:
        if self._lambda_settings is None:
            self._lambda_settings = load_lambda_settings()
        return self._lambda_settings

    def run(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run `work` with the started runtime; events handed to the store's outbox are
        marked before it returns."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self._invoke(work))

    async def _invoke(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        runtime = await self._started()
        try:
            return await work(runtime)
        finally:
            await runtime.transitioner().flush()
            await _cancel_leftovers()

    async def _started(self) -> Runtime:
        if self._runtime is None:
            runtime = Runtime(
                self.settings,
                with_backend=self._with_backend,
                backend=self._backend,
                clock=self._clock,
            )
            try:
                await runtime.__aenter__()
            except BaseException:
                # Close what did open; the next invocation starts over.
                await runtime.__aexit__(None, None, None)
                raise
            self._runtime = runtime
        return self._runtime

    def close(self) -> None:
        """Close the runtime and the loop (tests; a Lambda process is simply frozen)."""
        if self._runner is None:
            return
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            self._runner.run(runtime.__aexit__(None, None, None))
        self._runner.close()
        self._runner = None


async def _cancel_leftovers() -> None:
    """Cancel work an invocation left running (a launch past its deadline): a frozen
    process would otherwise resume it in the middle of the next invocation."""
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    if not leftovers:
        return
    log.warning("cancelling work left running at the end of the invocation", tasks=len(leftovers))
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def within(work: Awaitable[T], deadline: Deadline) -> T | None:
    """`work`'s result, or None when it did not finish by `deadline` (it is cancelled)."""
    timeout = asyncio.timeout(deadline.left_s())
    try:
        async with timeout:
            return await work
    except TimeoutError:
        if timeout.expired():
            return None
        raise
