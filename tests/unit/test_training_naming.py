"""Training job names: valid, bounded, deterministic and unique per (job id, attempt)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.core.naming import (
    MAX_ATTEMPT,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    training_job_name,
)
from stoker.core.spec import JOB_ID_PATTERN

job_ids = st.from_regex(JOB_ID_PATTERN, fullmatch=True) | st.text(min_size=1, max_size=200)
attempts = st.integers(min_value=0, max_value=MAX_ATTEMPT)


@given(job_ids, attempts)
def test_names_are_valid_and_bounded(job_id: str, attempt: int) -> None:
    """Every name matches SageMaker's pattern and has at most 63 characters."""
    name = training_job_name(job_id, attempt)
    assert NAME_PATTERN.match(name)
    assert len(name) <= MAX_NAME_LENGTH


@given(job_ids, attempts)
def test_names_are_deterministic(job_id: str, attempt: int) -> None:
    """The same job id and attempt always give the same name (the launch idempotency key)."""
    assert training_job_name(job_id, attempt) == training_job_name(job_id, attempt)


@given(job_ids, attempts, job_ids, attempts)
def test_distinct_pairs_get_distinct_names(a: str, i: int, b: str, j: int) -> None:
    """Two different (job id, attempt) pairs never share a name, even ignoring case."""
    if (a, i) != (b, j):
        assert training_job_name(a, i).lower() != training_job_name(b, j).lower()


def test_readable_ids_keep_their_spelling() -> None:
    """A lower-case id of letters, digits and single dashes is kept as it is."""
    assert training_job_name("churn-model-7", 2) == "churn-model-7-2"


def test_ids_differing_only_in_punctuation_or_case_differ() -> None:
    """Sanitising would map these ids to one text; the hash keeps their names apart."""
    names = {training_job_name(job_id, 1) for job_id in ("a_b", "a.b", "a-b", "A-b", "a--b")}
    assert len(names) == 5


def test_long_ids_are_shortened_with_a_hash() -> None:
    """An id too long for a name keeps a readable prefix and a hash."""
    name = training_job_name("x" * 128, 12)
    assert len(name) <= MAX_NAME_LENGTH
    assert name.startswith("xxxx")
    assert name.endswith("-12")
    assert "--" in name


@pytest.mark.parametrize(("job_id", "attempt"), [("", 1), ("job", -1), ("job", MAX_ATTEMPT + 1)])
def test_bad_input_is_rejected(job_id: str, attempt: int) -> None:
    """An empty id or an attempt outside 0..999999 is a ValueError."""
    with pytest.raises(ValueError, match="must"):
        training_job_name(job_id, attempt)


def test_a_job_id_ending_in_a_newline_is_hashed_not_kept() -> None:
    """`$` matches before a final newline; the readable shape must not let one through."""
    name = training_job_name("churn\n", 0)
    assert NAME_PATTERN.fullmatch(name)
    assert "--" in name
