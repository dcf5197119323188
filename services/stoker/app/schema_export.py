"""Render the event contract as JSON Schema (draft 2020-12) files."""

from __future__ import annotations

import json
from typing import Any

from stoker.core.events import EVENT_TYPES, envelope_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://stoker.dev/schemas/"


def _finish(schema: dict[str, Any], name: str) -> str:
    doc = {"$schema": DIALECT, "$id": BASE_ID + name, **schema}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def render_schemas() -> dict[str, str]:
    """File name -> file text, for the envelope and every event type's data."""
    files = {"cloudevent.schema.json": _finish(envelope_schema(), "cloudevent.schema.json")}
    for event_type, cls in sorted(EVENT_TYPES.items()):
        name = f"{cls.SCHEMA_NAME}.schema.json"
        schema = cls.model_json_schema(mode="serialization")
        schema["x-cloudevents-type"] = event_type
        files[name] = _finish(schema, name)
    files.update(_stream_schemas())
    return files


def _stream_schemas() -> dict[str, str]:
    """The duplicate stream's records: pairs in (plain JSON), scores out (CloudEvent data)."""
    from stoker.inference.pairs import DuplicatePair, DuplicateScore

    files = {}
    pair_name = f"{DuplicatePair.SCHEMA_NAME}.schema.json"
    files[pair_name] = _finish(DuplicatePair.model_json_schema(mode="validation"), pair_name)
    score = DuplicateScore.model_json_schema(mode="serialization")
    score["x-cloudevents-type"] = DuplicateScore.TYPE
    score_name = f"{DuplicateScore.SCHEMA_NAME}.schema.json"
    files[score_name] = _finish(score, score_name)
    return files
