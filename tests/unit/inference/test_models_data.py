"""Generated training data: deterministic, balanced, and labelled the way customers see it."""

from __future__ import annotations

from collections import Counter

import pytest

from stoker.inference.data import (
    INTENTS,
    PAIR_KINDS,
    generate_pairs,
    generate_queries,
    split_holdout,
)


def test_queries_are_deterministic_per_seed() -> None:
    """The same seed yields the same queries; another seed yields different ones."""
    assert generate_queries(60, seed=3) == generate_queries(60, seed=3)
    assert generate_queries(60, seed=3) != generate_queries(60, seed=4)


def test_queries_cover_every_intent_equally() -> None:
    """Intents come in equal shares, so accuracy is not inflated by a majority class."""
    counts = Counter(q.label for q in generate_queries(600, seed=1))
    assert set(counts) == set(INTENTS)
    assert set(counts.values()) == {100}
    assert all(q.text.strip() for q in generate_queries(600, seed=1))


def test_pairs_are_deterministic_per_seed() -> None:
    """The same seed yields the same product pairs."""
    assert generate_pairs(50, seed=9) == generate_pairs(50, seed=9)
    assert generate_pairs(50, seed=9) != generate_pairs(50, seed=10)


def test_pairs_mix_paraphrases_attribute_changes_and_other_products() -> None:
    """Every kind appears, only paraphrases are duplicates, about half the pairs are duplicates."""
    pairs = generate_pairs(1000, seed=2)
    kinds = Counter(p.kind for p in pairs)
    assert set(kinds) == set(PAIR_KINDS)
    assert all(p.duplicate == (p.kind == "paraphrase") for p in pairs)
    assert 0.4 < kinds["paraphrase"] / len(pairs) < 0.6


def test_attribute_change_keeps_type_and_changes_text() -> None:
    """A colour/size/pack variant is the same product type with a different record."""
    for pair in generate_pairs(300, seed=5):
        if pair.kind in {"colour", "size", "pack"}:
            assert pair.a.product_type == pair.b.product_type
            assert pair.a.as_text() != pair.b.as_text()


def test_split_is_deterministic_and_disjoint() -> None:
    """The held-out split depends only on the seed and never overlaps the training part."""
    items = list(range(100))
    train, held = split_holdout(items, 0.2, seed=1)
    assert (train, held) == split_holdout(items, 0.2, seed=1)
    assert len(held) == 20
    assert sorted(train + held) == items


def test_split_rejects_a_bad_fraction() -> None:
    """A held-out fraction outside (0, 1) is refused with the bad value in the message."""
    with pytest.raises(ValueError, match=r"1\.5"):
        split_holdout([1, 2, 3], 1.5, seed=1)
