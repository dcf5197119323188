"""DynamoDB's item size limit, checked before a write instead of learnt from a refusal.

DynamoDB refuses an item over 400 KB (attribute names and values together) with a
ValidationException that names no field; a job that large would otherwise fail as an
opaque error. The store measures each item it is about to write and raises ItemTooLarge
naming the part of the job that makes it large.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from stoker.core.errors import ItemTooLarge
from stoker.core.job import JobRecord

MAX_ITEM_BYTES = 400 * 1024
_DESCEND_DEPTH = 3


def item_bytes(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item in its wire form (`{"name": {"S": ...}}`):
    UTF-8 names and strings, raw binary, numbers by their digits (an upper bound), and a
    few bytes of overhead per nested value."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    try:
        measure = _MEASURES[kind]
    except KeyError:
        raise ValueError(f"unknown DynamoDB attribute type {kind!r}") from None
    return measure(data)


_MEASURES: dict[str, Callable[[Any], int]] = {
    "S": lambda data: len(str(data).encode()),
    "N": lambda data: len(str(data)),
    "B": len,
    "BOOL": lambda _data: 1,
    "NULL": lambda _data: 1,
    "M": lambda data: 3 + sum(len(k.encode()) + 1 + _value_bytes(v) for k, v in data.items()),
    "L": lambda data: 3 + sum(1 + _value_bytes(v) for v in data),
    "SS": lambda data: sum(len(str(v).encode()) for v in data),
    "NS": lambda data: sum(len(str(v)) for v in data),
    "BS": lambda data: sum(len(v) for v in data),
}


def check_items(
    items: Iterable[Mapping[str, Any]], job: JobRecord, *, limit_bytes: int = MAX_ITEM_BYTES
) -> None:
    """ItemTooLarge if any item is over the limit, naming the largest part of `job`."""
    for item in items:
        size = item_bytes(item)
        if size > limit_bytes:
            raise ItemTooLarge(largest_field(job), size, limit_bytes)


def largest_field(job: JobRecord) -> str:
    """The dotted path of what makes a job large: the spec's largest field, followed down
    while one child holds most of it (`training.HyperParameters`), else the record's."""
    record = job.model_dump(mode="json")
    spec = record.get("spec")
    if isinstance(spec, dict) and _size(spec) * 2 > _size(record):
        return _largest_path(spec, "", _DESCEND_DEPTH) or "<spec>"
    return _largest_path(record, "", 1) or "<job>"


def _largest_path(value: Any, path: str, depth: int) -> str:
    if depth == 0 or not isinstance(value, dict) or not value:
        return path
    key, child = max(value.items(), key=lambda kv: _size(kv[1]))
    if _size(child) * 2 <= _size(value):
        return path  # no one part dominates: the whole of this one is the large field
    return _largest_path(child, f"{path}.{key}" if path else str(key), depth - 1)


def _size(value: Any) -> int:
    return len(orjson.dumps(value))
