"""The services' event loop: uvloop by default, the standard loop on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from stoker.aio import run_event_loop
from stoker.settings import Settings


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_runs_the_services_by_default() -> None:
    assert Settings().event_loop == "uvloop"
    assert run_event_loop(_loop_type(), "uvloop") is uvloop.Loop


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_EVENT_LOOP", "asyncio")
    kind = Settings().event_loop
    assert kind == "asyncio"
    assert not issubclass(run_event_loop(_loop_type(), kind), uvloop.Loop)


def test_an_unknown_loop_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from stoker.core.errors import ConfigurationError
    from stoker.settings import load_settings

    monkeypatch.setenv("STOKER_EVENT_LOOP", "trio")
    with pytest.raises(ConfigurationError, match="STOKER_EVENT_LOOP"):
        load_settings()
