"""One customer's energy forecast: a Prophet model, its artifact, its inference entry point.

The artifact is `{customer}.tar.gz` holding `model.json` (the model serialised by Prophet's
own `model_to_json`) and `code/inference.py` (this file), the layout SageMaker's inference
toolkit reads: `model_fn(model_dir)`, `input_fn(body, content_type)`, `predict_fn(request,
model)`, `output_fn(prediction, accept)`. So an artifact serves unchanged on a SageMaker
multi-model endpoint, and `stoker endpoints serve` calls the same functions (from the
installed package, never from an artifact: an endpoint runs no code it downloads).

A request is `{"period": N}`: N daily steps after the last observation. The answer is
`{"forecast": [{"ds": "2023-01-01T00:00:00", "yhat": ..., "yhat_lower": ...,
"yhat_upper": ...}, ...]}`.

Imports only Prophet, pandas and the standard library, so it runs wherever the model does.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from cmdstanpy.utils import get_logger as cmdstanpy_logger

# Prophet logs an error at import when plotly (its optional plotting) is missing: nothing
# here plots, and the line would land on every worker's and demo's console.
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)

from prophet import Prophet  # noqa: E402 (after the logger's level is set)
from prophet.serialize import model_from_json, model_to_json  # noqa: E402

MODEL_FILE = "model.json"
CODE_FILE = "code/inference.py"
MAX_PERIOD = 1000
"""Most daily steps one request may ask for; a bound on one request's work."""

CSV_COLUMNS = ("customer_id", "timestamp", "consumption")


class BadRequest(ValueError):
    """A request body that is not `{"period": N}`; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        # Both as args: the error crosses from a worker process by pickle, which rebuilds it
        # from them.
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class ArtifactError(Exception):
    """An artifact that cannot be read as a forecast model; the message says why."""


@dataclass(frozen=True, slots=True)
class ForecastRequest:
    period: int


def fit(frame: pd.DataFrame, *, uncertainty_samples: int = 1000) -> Prophet:
    """A Prophet model of one customer's rows (`timestamp`, `consumption` columns)."""
    missing = [c for c in ("timestamp", "consumption") if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; expected {list(CSV_COLUMNS)}")
    history = pd.DataFrame(
        {"ds": pd.to_datetime(frame["timestamp"]), "y": frame["consumption"].astype(float)}
    ).sort_values("ds")
    # cmdstanpy logs two INFO lines per fit (its logger is set up on first use, so after
    # import); a fleet of fits would drown every other log line.
    cmdstanpy_logger().setLevel(logging.WARNING)
    model = Prophet(uncertainty_samples=uncertainty_samples)
    with _quiet():
        model.fit(history)
    return model


@contextmanager
def _quiet() -> Iterator[None]:
    """Prophet 1.5 passes pandas arguments pandas 3 deprecates (`inplace=`): a warning per
    fit and per predict that says nothing about the model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="prophet")
        yield


def artifact_bytes(model: Prophet) -> bytes:
    """The `{customer}.tar.gz` content: model.json and this file as code/inference.py."""
    buffer = io.BytesIO()
    # gzip's default level, as `tar czf` packs: tarfile's 9 costs 2-3 times the CPU of a fit's
    # compression for 1 % less.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        _add(tar, MODEL_FILE, model_to_json(model).encode())
        _add(tar, CODE_FILE, Path(__file__).read_bytes())
    return buffer.getvalue()


def write_artifact(model: Prophet, dest: Path) -> int:
    """Write the artifact to `dest`; returns its size in bytes."""
    data = artifact_bytes(model)
    dest.write_bytes(data)
    return len(data)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def artifact_size(path: Path) -> int:
    """Bytes of the serialised model inside an artifact (a `.tar.gz` or a folder holding
    model.json), read from the archive's header: what loading it will cost in memory is
    judged before it is loaded."""
    try:
        if path.is_dir():
            return (path / MODEL_FILE).stat().st_size
        with tarfile.open(path, mode="r:gz") as tar:
            return tar.getmember(MODEL_FILE).size
    except KeyError:
        raise ArtifactError(f"no {MODEL_FILE} in the archive") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"not a readable .tar.gz: {exc}") from exc


def load_artifact(path: Path) -> Prophet:
    """The model of an artifact: a `.tar.gz` as written above, or a folder holding
    model.json (what SageMaker unpacks an artifact into)."""
    if path.is_dir():
        return model_fn(str(path))
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            member = tar.extractfile(MODEL_FILE)
            if member is None:
                raise ArtifactError(f"{MODEL_FILE} in the archive is not a file")
            text = member.read().decode()
    except KeyError:
        raise ArtifactError(f"no {MODEL_FILE} in the archive") from None
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"not a readable .tar.gz: {exc}") from exc
    return _from_json(text)


def _from_json(text: str) -> Prophet:
    try:
        return model_from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{MODEL_FILE} is not a Prophet model: {exc!r}") from exc


def parse_request(body: bytes) -> ForecastRequest:
    """`{"period": N}` with 1 <= N <= MAX_PERIOD; BadRequest naming the field otherwise."""
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("<body>", f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("<body>", f"expected a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - {"period"})
    if unknown:
        raise BadRequest(unknown[0], "unknown field; expected only 'period'")
    if "period" not in value:
        raise BadRequest("period", "required field is missing")
    period = value["period"]
    if isinstance(period, bool) or not isinstance(period, int):
        raise BadRequest("period", f"expected an integer, got {json.dumps(period)}")
    if not 1 <= period <= MAX_PERIOD:
        raise BadRequest("period", f"must be between 1 and {MAX_PERIOD} (got {period})")
    return ForecastRequest(period)


def forecast(model: Prophet, request: ForecastRequest) -> dict[str, Any]:
    future = model.make_future_dataframe(periods=request.period, freq="D", include_history=False)
    with _quiet():
        predicted = model.predict(future)
    columns = [c for c in ("yhat", "yhat_lower", "yhat_upper") if c in predicted.columns]
    rows = []
    for record in predicted[["ds", *columns]].itertuples(index=False):
        row: dict[str, Any] = {"ds": record[0].isoformat()}
        row.update({name: float(v) for name, v in zip(columns, record[1:], strict=True)})
        rows.append(row)
    return {"forecast": rows}


def predict(model: Prophet, request: ForecastRequest) -> bytes:
    """The answer's JSON bytes: what an endpoint sends back."""
    return output_fn(forecast(model, request))


def predict_batch(model: Prophet, requests: list[ForecastRequest]) -> list[bytes]:
    """The answers of several requests to one model, from one Prophet predict over the
    longest period: a request's answer is the first `period` days of it. Prophet's cost is
    mostly per call (building the frame, sampling the uncertainty), so a batch of n costs
    little more than one request. The days in common are the same forecast; their interval
    bounds come from one draw of the uncertainty samples instead of one draw each."""
    longest = forecast(model, ForecastRequest(max(request.period for request in requests)))
    rows = longest["forecast"]
    return [output_fn({"forecast": rows[: request.period]}) for request in requests]


# SageMaker inference toolkit handlers.


def model_fn(model_dir: str) -> Prophet:
    try:
        text = (Path(model_dir) / MODEL_FILE).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"cannot read {MODEL_FILE}: {exc}") from exc
    return _from_json(text)


def input_fn(body: bytes | str, content_type: str = "application/json") -> ForecastRequest:
    if content_type.partition(";")[0].strip() not in ("application/json", ""):
        raise BadRequest("ContentType", f"expected application/json, got {content_type!r}")
    return parse_request(body.encode() if isinstance(body, str) else body)


def predict_fn(request: ForecastRequest, model: Prophet) -> dict[str, Any]:
    return forecast(model, request)


def output_fn(prediction: dict[str, Any], accept: str = "application/json") -> bytes:
    return json.dumps(prediction).encode()
