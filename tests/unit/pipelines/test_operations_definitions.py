"""Reading a definition from the object store (`PipelineDefinitionS3Location`) through the
ObjectReader port, with its memory fake: what is refused, and how it is named."""

from __future__ import annotations

import pytest

from stoker.adapters.objects.memory import MemoryObjectReader
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.core.clock import SystemClock
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.operations import (
    MAX_DEFINITION_BYTES,
    DefinitionUnreadable,
    PipelineOperations,
)
from tests.unit.pipelines.fakes import Jobs, Published


def operations(objects: MemoryObjectReader | None) -> PipelineOperations:
    store, clock = MemoryPipelineStore(), SystemClock()
    engine = PipelineEngine(store, Jobs(), Published(), clock)
    return PipelineOperations(store, engine, clock, objects=objects)


async def test_a_definition_is_read_as_text() -> None:
    ops = operations(MemoryObjectReader({("b", "k.json"): b'{"Version": "2020-12-01"}'}))
    assert await ops.read_definition("b", "k.json", None) == '{"Version": "2020-12-01"}'


@pytest.mark.parametrize(
    ("objects", "reason"),
    [
        (MemoryObjectReader(), "no object s3://b/k.json"),
        (
            MemoryObjectReader({("b", "k.json"): b"x" * (MAX_DEFINITION_BYTES + 1)}),
            f"cannot read s3://b/k.json: memory://b/k.json holds {MAX_DEFINITION_BYTES + 1} "
            f"bytes, more than {MAX_DEFINITION_BYTES}",
        ),
        (MemoryObjectReader({("b", "k.json"): b"\xff\xfe"}), "s3://b/k.json is not UTF-8 text"),
        (None, "this stoker has no S3 client (the `aws` extra is not installed)"),
    ],
)
async def test_what_cannot_be_read_is_refused_naming_the_field(
    objects: MemoryObjectReader | None, reason: str
) -> None:
    with pytest.raises(DefinitionUnreadable) as refused:
        await operations(objects).read_definition("b", "k.json", None)
    assert str(refused.value) == f"PipelineDefinitionS3Location: {reason}"
