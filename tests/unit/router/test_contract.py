"""The router's public surface and the stream's JSON Schemas in schemas/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson

import stoker.inference.router as router_pkg
from stoker.app.schema_export import render_schemas
from stoker.core.events import CloudEvent
from stoker.inference.pairs import DuplicateScore

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def test_public_api_is_what_it_claims() -> None:
    """Every name in __all__ exists, and nothing private is exported."""
    for name in router_pkg.__all__:
        assert hasattr(router_pkg, name), name
        assert not name.startswith("_")
    assert {"Router", "BatchPolicy", "BatchingConfig", "Priority", "QueueFull"} <= set(
        router_pkg.__all__
    )


def test_stream_schema_files_match_the_models() -> None:
    """schemas/duplicate-*.schema.json are exactly what the pydantic models generate."""
    rendered = render_schemas()
    for name in ("duplicate-pair.schema.json", "duplicate-score.schema.json"):
        assert (SCHEMAS / name).read_text(encoding="utf-8") == rendered[name]


def test_pair_and_score_records_validate_against_the_schema_files() -> None:
    """A pair record and a score event's data validate; a pair missing `b` does not."""
    pair_schema = json.loads((SCHEMAS / "duplicate-pair.schema.json").read_text())
    score_schema = json.loads((SCHEMAS / "duplicate-score.schema.json").read_text())
    good = {"pair_id": "p1", "a": {"title": "kettle"}, "b": {"title": "kettle", "description": ""}}
    jsonschema.validate(good, pair_schema)
    validator = jsonschema.Draft202012Validator(pair_schema)
    assert not validator.is_valid({"pair_id": "p2", "a": {"title": "x"}})
    event = CloudEvent.wrap(
        DuplicateScore(pair_id="p1", score=0.93, truncated=False, model="duplicate"),
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    doc = orjson.loads(event.to_json())
    assert doc["subject"] == "p1"
    assert doc["type"] == score_schema["x-cloudevents-type"]
    jsonschema.validate(doc["data"], score_schema)
