"""Predictions of one model that queue together on a worker run as one `predict_batch`: the
worker's grouping of the calls it has read (`plan`), its reading of whole frames from the
socket (`Frames`), and the fleet answering each caller from one batch."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.objects import MemoryObjectStore
from stoker.inference.fleet.batching import HEADER, Call, Frames, plan
from stoker.inference.fleet.errors import InvalidPayload
from stoker.training_scripts import energy_data, forecast_model
from tests.support.waiting import wait_until
from tests.unit.fleet.test_fleet import PERIOD, fleet_of
from tests.unit.fleet.toy_handler import artifact, entered


def predict(call_id: int, name: str) -> Call:
    return (call_id, "predict", (name, PERIOD))


def ids(groups: list[list[Call]]) -> list[list[int]]:
    return [[call_id for call_id, _, _ in group] for group in groups]


def test_predictions_of_one_model_in_a_run_are_one_group() -> None:
    calls = [predict(0, "a"), predict(1, "b"), predict(2, "a"), predict(3, "a")]
    assert ids(plan(calls, 8)) == [[0, 2, 3], [1]]


def test_nothing_moves_across_another_call() -> None:
    """An unload sent after a prediction runs after it, and one sent before runs before."""
    unload: Call = (1, "unload", ("a",))
    calls = [predict(0, "a"), unload, predict(2, "a"), predict(3, "a")]
    assert ids(plan(calls, 8)) == [[0], [1], [2, 3]]


def test_a_group_holds_at_most_max_batch_calls() -> None:
    calls = [predict(i, "a") for i in range(5)]
    assert ids(plan(calls, 2)) == [[0, 1], [2, 3], [4]]
    assert ids(plan(calls, 1)) == [[0], [1], [2], [3], [4]]


def test_frames_are_returned_whole_however_the_bytes_arrive() -> None:
    parent, child = socket.socketpair()
    with parent, child:
        frames = Frames(child)
        data = [pickle.dumps(n) for n in range(3)]
        framed = b"".join(HEADER.pack(len(d)) + d for d in data)
        cut = len(framed) - 3
        parent.sendall(framed[:cut])
        assert [pickle.loads(f) for f in frames.next() or []] == [0, 1]
        parent.sendall(framed[cut:])
        assert [pickle.loads(f) for f in frames.next() or []] == [2]
        parent.close()
        assert frames.next() is None


async def test_requests_queued_behind_a_slow_call_run_as_one_batch(tmp_path: Path) -> None:
    """On a worker busy with a slow model, four requests for another model queue (one of
    them with a bad body); when the worker is free they run as one batch of the three good
    ones, each caller gets its own answer, and the bad body is its own 400."""
    gate = tmp_path / "gate"
    store = MemoryObjectStore({"slow.tar.gz": artifact(1, gate=gate), "hot.tar.gz": artifact(2)})
    preload = ("slow.tar.gz", "hot.tar.gz")
    async with fleet_of(store, tmp_path, workers=1, preload=preload, max_batch=8) as fleet:
        slow = asyncio.ensure_future(fleet.invoke("slow.tar.gz", PERIOD))
        # Inside the slow call, not only sent: calls the worker has not read yet would be
        # read with it, and split between two reads.
        await wait_until(
            entered(gate).exists, 30.0, 0.005, what="the slow call running in the worker"
        )
        bodies = [b'{"period": 1}', b'{"period": 2}', b'{"period": "x"}', b'{"period": 4}']
        queued = [asyncio.ensure_future(fleet.invoke("hot.tar.gz", body)) for body in bodies]
        await wait_until(lambda: fleet.busy_calls == 5, what="four calls queued behind it")
        gate.touch()
        await slow
        answers = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(answers[2], InvalidPayload)
    assert answers[2].field == "period"
    good = [json.loads(a.body) for a in answers if not isinstance(a, BaseException)]
    assert good == [{"value": 2 * n, "batch": 3} for n in (1, 2, 4)]


async def test_max_batch_1_runs_each_request_alone(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    store = MemoryObjectStore({"slow.tar.gz": artifact(1, gate=gate), "hot.tar.gz": artifact(2)})
    preload = ("slow.tar.gz", "hot.tar.gz")
    async with fleet_of(store, tmp_path, workers=1, preload=preload, max_batch=1) as fleet:
        slow = asyncio.ensure_future(fleet.invoke("slow.tar.gz", PERIOD))
        await wait_until(
            entered(gate).exists, 30.0, 0.005, what="the slow call running in the worker"
        )
        queued = [asyncio.ensure_future(fleet.invoke("hot.tar.gz", PERIOD)) for _ in range(3)]
        await wait_until(lambda: fleet.busy_calls == 4, what="three calls queued behind it")
        gate.touch()
        await slow
        answers = await asyncio.gather(*queued)
    assert [json.loads(a.body) for a in answers] == [{"value": 6}] * 3


@pytest.fixture(scope="module")
def prophet_model() -> Any:
    frame = energy_data.generate(
        customers=1,
        rows_per_customer=60,
        start=datetime(2021, 1, 1),
        end=datetime(2022, 1, 1),
        seed=3,
    )
    return forecast_model.fit(frame, uncertainty_samples=20)


def test_the_forecast_models_batch_answers_each_period(prophet_model: Any) -> None:
    """One Prophet predict over the longest period answers every request of the batch with
    its own days: the same days and point forecasts as predicting it alone."""
    requests = [forecast_model.ForecastRequest(p) for p in (3, 7, 1)]
    answers = [
        json.loads(a)["forecast"] for a in forecast_model.predict_batch(prophet_model, requests)
    ]
    assert [len(a) for a in answers] == [3, 7, 1]
    alone = json.loads(forecast_model.predict(prophet_model, requests[1]))["forecast"]
    assert [row["ds"] for row in answers[1]] == [row["ds"] for row in alone]
    assert [row["yhat"] for row in answers[1]] == pytest.approx([row["yhat"] for row in alone])
    assert answers[0] == answers[1][:3]


async def test_a_request_joins_a_queued_call_for_its_model_instead_of_a_copy(
    tmp_path: Path,
) -> None:
    """Both workers are busy with slow models; a request for a model queued on one of them
    joins that call's batch instead of loading a copy into the other worker."""
    gates = [tmp_path / "gate-0", tmp_path / "gate-1"]
    store = MemoryObjectStore(
        {
            "slow-0.tar.gz": artifact(1, gate=gates[0]),
            "slow-1.tar.gz": artifact(1, gate=gates[1]),
            "hot.tar.gz": artifact(2),
        }
    )
    # The fewest-models rule puts slow-0 and hot on one worker, slow-1 on the other.
    preload = ("slow-0.tar.gz", "slow-1.tar.gz", "hot.tar.gz")
    async with fleet_of(store, tmp_path, workers=2, preload=preload, max_batch=8) as fleet:
        slow = [asyncio.ensure_future(fleet.invoke(f"slow-{i}.tar.gz", PERIOD)) for i in (0, 1)]
        await wait_until(lambda: fleet.busy_calls == 2, what="both workers busy")
        first = asyncio.ensure_future(fleet.invoke("hot.tar.gz", PERIOD))
        await wait_until(lambda: fleet.busy_calls == 3, what="the first call queued")
        second = asyncio.ensure_future(fleet.invoke("hot.tar.gz", PERIOD))
        await wait_until(lambda: fleet.busy_calls == 4, what="the second call queued")
        assert fleet.loads_started == 3  # the preloads: no copy was loaded
        for gate in gates:
            gate.touch()
        await asyncio.gather(*slow)
        answers = await asyncio.gather(first, second)
    assert [json.loads(a.body) for a in answers] == [{"value": 6, "batch": 2}] * 2
