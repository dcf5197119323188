"""Size limits of a job submission, so no field can grow without bound.

The named maps follow SageMaker's own CreateTrainingJob limits (a request over them would
be refused at launch anyway; refusing it at submission names the field at once). The
generic limits bound everything else in the free-form `training` request: the longest
string SageMaker accepts there is a 4096-character local path, its longest list has 100
items. Pure: the job spec turns the problems found here into validation errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stoker.core.naming import JOB_ID_TAG, MAX_TAGS

MAX_SPEC_BYTES = 256 * 1024
"""Largest submission body the jobs API reads: far above any real CreateTrainingJob
request, and below DynamoDB's 400 KB item, which holds the spec with the job's state."""

MAX_TEXT_CHARS = 4096
MAX_LIST_ITEMS = 100
MAX_MAP_ENTRIES = 100
MAX_DEPTH = 8
MAX_NOTIFY_TARGETS = 10
MAX_FALLBACKS = 10
MAX_INSTANCE_TYPE_CHARS = 64
MAX_USER_TAGS = MAX_TAGS - 1
"""SageMaker takes MAX_TAGS tags; the launcher adds one (`stoker:job-id`)."""


@dataclass(frozen=True, slots=True)
class MapLimit:
    """A string-to-string map of the request: at most `entries`, each key and value at most
    `key_chars` / `value_chars` characters."""

    entries: int
    key_chars: int
    value_chars: int


MAP_LIMITS: Mapping[str, MapLimit] = {
    "Environment": MapLimit(entries=100, key_chars=512, value_chars=512),
    "HyperParameters": MapLimit(entries=100, key_chars=256, value_chars=2500),
}
TAG_KEY_CHARS = 128
TAG_VALUE_CHARS = 256

Loc = tuple[str | int, ...]


def training_problems(training: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Every size problem of a CreateTrainingJob request, as (location, message)."""
    problems: list[tuple[Loc, str]] = []
    for name, limit in MAP_LIMITS.items():
        if name in training:
            problems.extend(_map_problems((name,), training[name], limit))
    if "Tags" in training:
        problems.extend(_tag_problems(training["Tags"]))
    _walk((), training, 0, problems)
    # A value over its named limit is usually over a generic one too: say it once.
    first: dict[Loc, str] = {}
    for loc, message in problems:
        first.setdefault(loc, message)
    return list(first.items())


def _map_problems(loc: Loc, value: Any, limit: MapLimit) -> list[tuple[Loc, str]]:
    if not isinstance(value, Mapping):
        return [(loc, "must be an object of strings")]
    problems: list[tuple[Loc, str]] = []
    if len(value) > limit.entries:
        problems.append((loc, f"at most {limit.entries} entries, got {len(value)}"))
    for key, item in value.items():
        if len(str(key)) > limit.key_chars:
            problems.append((loc, f"key {str(key)[:40]!r}... longer than {limit.key_chars}"))
        if not isinstance(item, str):
            problems.append(((*loc, str(key)), "must be a string"))
        elif len(item) > limit.value_chars:
            problems.append(((*loc, str(key)), f"at most {limit.value_chars} characters"))
    return problems


def _tag_problems(tags: Any) -> list[tuple[Loc, str]]:
    if not isinstance(tags, list):
        return [(("Tags",), "must be a list of {Key, Value}")]
    problems: list[tuple[Loc, str]] = []
    if len(tags) > MAX_USER_TAGS:
        problems.append(
            (
                ("Tags",),
                f"at most {MAX_USER_TAGS} tags, got {len(tags)}: SageMaker allows {MAX_TAGS} "
                f"and stoker adds {JOB_ID_TAG!r} to each training job",
            )
        )
    for i, tag in enumerate(tags):
        if not isinstance(tag, Mapping):
            continue
        for part, most in (("Key", TAG_KEY_CHARS), ("Value", TAG_VALUE_CHARS)):
            text = tag.get(part)
            if isinstance(text, str) and len(text) > most:
                problems.append((("Tags", i, part), f"at most {most} characters"))
    return problems


def _walk(loc: Loc, value: Any, depth: int, problems: list[tuple[Loc, str]]) -> None:
    if depth > MAX_DEPTH:
        problems.append((loc, f"nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            problems.append((loc, f"at most {MAX_TEXT_CHARS} characters, got {len(value)}"))
    elif isinstance(value, Mapping):
        if len(value) > MAX_MAP_ENTRIES:
            problems.append((loc, f"at most {MAX_MAP_ENTRIES} entries, got {len(value)}"))
            return
        for key, item in value.items():
            if len(str(key)) > MAX_TEXT_CHARS:
                problems.append((loc, f"a key longer than {MAX_TEXT_CHARS} characters"))
                continue
            _walk((*loc, str(key)), item, depth + 1, problems)
    elif isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            problems.append((loc, f"at most {MAX_LIST_ITEMS} items, got {len(value)}"))
            return
        for i, item in enumerate(value):
            _walk((*loc, i), item, depth + 1, problems)
