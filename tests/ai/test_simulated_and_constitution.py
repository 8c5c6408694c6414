"""The simulated AI labeler (known accuracy, calibrated) and constitution loading."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from alignkit.ai import SimulatedAILabeler, load_constitution, route_low_confidence


@dataclass
class FakeScore:
    utility: float
    helpfulness: float = 0.0
    honesty: float = 0.0
    harmlessness: float = 0.0


class FakeWorld:
    """score(prompt, response) = the number in the response text (utility), harmlessness = -that."""

    def score(self, prompt, response):
        value = float(response.split()[-1])
        return FakeScore(utility=value, harmlessness=-value)


def _pairs(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x, y = rng.sample(range(100), 2)
        out.append((f"q{i}", f"answer {x}", f"answer {y}"))
    return out


def test_accuracy_and_calibration_are_as_configured():
    pairs = _pairs(4000)
    labels = SimulatedAILabeler(FakeWorld(), accuracy=0.8, seed=1).label(pairs)
    truth_a = [float(a.split()[-1]) > float(b.split()[-1]) for _, a, b in pairs]
    right = [(lab.p_a > 0.5) == t for lab, t in zip(labels, truth_a)]
    # Binomial standard error at n=4000, p=0.8: sqrt(0.16/4000) = 0.0063; allow ~4 SE.
    assert sum(right) / len(right) == pytest.approx(0.8, abs=0.025)
    conf = [lab.confidence for lab in labels]
    assert min(conf) >= 0.6 - 1e-9 and max(conf) <= 1.0  # accuracy 0.8 -> confidence in [0.6, 1.0]
    # Calibration: confident labels are right more often than unsure ones.
    accepted, needs_human = route_low_confidence(labels, 0.8)
    acc_hi = sum(r for lab, r in zip(labels, right) if lab.confidence >= 0.8) / len(accepted)
    acc_lo = sum(r for lab, r in zip(labels, right) if lab.confidence < 0.8) / len(needs_human)
    # Expected: mean confidence of each half, 0.9 and 0.7.
    assert acc_hi == pytest.approx(0.9, abs=0.03) and acc_lo == pytest.approx(0.7, abs=0.03)


def test_extremes_ties_criterion_and_determinism():
    pairs = _pairs(200)
    perfect = SimulatedAILabeler(FakeWorld(), accuracy=1.0).label(pairs)
    assert all((lab.p_a == 1.0) == (float(a.split()[-1]) > float(b.split()[-1])) for lab, (_, a, b) in zip(perfect, pairs))
    assert {lab.p_a for lab in SimulatedAILabeler(FakeWorld(), accuracy=0.5).label(pairs)} == {0.5}
    [tie] = SimulatedAILabeler(FakeWorld(), accuracy=0.9).label([("q", "answer 3", "also 3")])
    assert tie.p_a == 0.5
    # criterion=harmlessness (= -utility here) flips which side is truly better.
    harmless = SimulatedAILabeler(FakeWorld(), accuracy=1.0, criterion="harmlessness").label(pairs)
    assert all(h.p_a == 1.0 - p.p_a for h, p in zip(harmless, perfect))
    a = SimulatedAILabeler(FakeWorld(), accuracy=0.7, seed=3).label(pairs)
    b = SimulatedAILabeler(FakeWorld(), accuracy=0.7, seed=3).label(pairs)
    c = SimulatedAILabeler(FakeWorld(), accuracy=0.7, seed=4).label(pairs)
    assert [x.p_a for x in a] == [x.p_a for x in b] != [x.p_a for x in c]
    with pytest.raises(ValueError, match="accuracy"):
        SimulatedAILabeler(FakeWorld(), accuracy=0.3)


def test_on_the_sandbox_world():
    sandbox = pytest.importorskip("alignkit.sandbox")
    world = sandbox.build_world(seed=0)
    pairs = sandbox.truth_pairs(world, 1000, seed=0)  # chosen is truly better (by utility)
    labels = SimulatedAILabeler(world, accuracy=0.75, seed=0).label(pairs)
    assert all(lab.response_a == p["chosen"] for lab, p in zip(labels, pairs))
    acc = sum(lab.p_a > 0.5 for lab in labels) / len(labels)
    assert acc == pytest.approx(0.75, abs=0.05)  # SE sqrt(0.75*0.25/1000) = 0.014


def test_default_constitution():
    c = load_constitution()
    assert c.name == "hhh" and 8 <= len(c.principles) <= 12
    criteria = {k for p in c.principles for k in p.criteria}
    assert criteria == {"helpfulness", "honesty", "harmlessness"}
    harmless = c.only("harmlessness")
    assert harmless.principles and all("harmlessness" in p.criteria for p in harmless.principles)
    assert len(harmless.principles) < len(c.principles)


def test_bad_constitution_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("principles:\n  - name: x\n    critique_request: c\n    revision_request: r\n")
    with pytest.raises(ValueError, match=r"c\.yaml.*principles\.0\.comparison"):
        load_constitution(bad)
    bad.write_text(
        "principles:\n  - name: x\n    critique_request: c\n    revision_request: r\n    comparison: q\n"
        "    criteria: [kindness]\n"
    )
    with pytest.raises(ValueError, match=r"criteria"):
        load_constitution(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_constitution(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_constitution(tmp_path / "missing.yaml")
    good = tmp_path / "g.yaml"
    good.write_text(
        "name: mine\nprinciples:\n  - {name: a, critique_request: c, revision_request: r, comparison: q}\n"
        "  - {name: a, critique_request: c, revision_request: r, comparison: q}\n"
    )
    with pytest.raises(ValueError, match="unique"):
        load_constitution(good)


def test_prompt_objects_and_message_lists():
    from alignkit.ai.judge import prompt_text

    class SandboxLike:
        text = "What is the river?"

    assert prompt_text(SandboxLike()) == "What is the river?"
    assert (
        prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        == "system: Be brief.\nuser: Hi"
    )
    [lab] = SimulatedAILabeler(FakeWorld(), accuracy=1.0).label([(SandboxLike(), "answer 2", "answer 1")])
    assert lab.p_a == 1.0
