"""The world: deterministic, well-formed, with splits that do not leak and a small vocabulary."""

from __future__ import annotations

from collections import Counter

import pytest

from alignkit.sandbox import CATEGORIES, World, WorldConfig, build_world


def test_same_seed_same_world_and_other_seed_differs():
    a = World(WorldConfig(seed=3))
    b = World(WorldConfig(seed=3))
    c = World(WorldConfig(seed=4))
    assert a.kb_records() == b.kb_records()
    assert [p.to_dict() for p in a.prompts("all")] == [p.to_dict() for p in b.prompts("all")]
    assert a.kb_records() != c.kb_records()


def test_categories_splits_and_ids(world):
    prompts = world.prompts("all")
    assert {p.category for p in prompts} == set(CATEGORIES)
    assert len({p.id for p in prompts}) == len(prompts)
    assert len({p.text for p in prompts}) == len(prompts)
    by_split = {s: {p.text for p in world.prompts(s)} for s in ("train", "eval", "test")}
    assert sum(len(v) for v in by_split.values()) == len(prompts)
    assert not (by_split["train"] & by_split["eval"]) and not (by_split["train"] & by_split["test"])
    # every category is present in every split
    for s in ("train", "eval", "test"):
        assert {p.category for p in world.prompts(s)} == set(CATEGORIES), s
    # a jailbreak sits in the split of the harmful request it wraps
    split_of = {p.text: p.split for p in prompts}
    for p in world.prompts("all", category="jailbreak"):
        assert p.inner in split_of and split_of[p.inner] == p.split


def test_unanswerable_entities_are_not_in_the_kb(world):
    kb_lower = {n.lower() for n in world.kb}
    unknown = world.prompts("all", category="unanswerable")
    assert unknown
    for p in unknown:
        assert p.entity.lower() not in kb_lower
        assert world.entity(p.entity) is None


def test_factual_answers_match_the_kb(world):
    for p in world.prompts("all", category="factual"):
        assert world.kb[p.entity].attributes[p.attribute] == p.answer


def test_kb_is_modest_and_language_is_small(world):
    assert 60 <= len(world.kb) <= 150
    assert len(world.vocabulary()) < 700  # names included; a 512-token BPE covers this easily
    counts = Counter(p.category for p in world.prompts("all"))
    assert min(counts.values()) >= 30


def test_prompts_filters_and_errors(world):
    assert len(world.prompts("eval", n=5)) == 5
    assert all(p.category == "harmful" for p in world.prompts("test", category="harmful"))
    with pytest.raises(ValueError, match="split"):
        world.prompts("dev")
    with pytest.raises(ValueError, match="unknown category"):
        world.prompts("train", category="sports")


def test_build_world_caches_equal_configs():
    assert build_world(0) is build_world(0)
