"""Safety: a policy as data, guard classifiers, red-team attacks, and turning findings into training data.

* :mod:`~alignkit.safety.policy` — hazard categories (MLCommons S1-S14 by default, plus your own from YAML);
* :mod:`~alignkit.safety.guard` — a trained multi-label guard classifier and a judge-model guard in
  Llama Guard's prompt format, both scoring (prompt, response) text per category;
* :mod:`~alignkit.safety.moderate` — filtering a training set with a guard (nothing silently lost),
  and a guard's flag rate per model for evaluations;
* :mod:`~alignkit.safety.attacks` — attack generators (templates, obfuscation, crescendo, an
  attacker-LLM loop), attack success rates with CIs, and exports of successful attacks as SFT
  refusals, DPO pairs and a Red-Instruct dataset;
* :mod:`~alignkit.safety.judge_attack` — ``redteam --target judge``: injection flip rates of the
  pairwise judge, hardened vs legacy quoting.

Names are re-exported lazily (PEP 562); importing a torch-free submodule (``policy``, ``config``)
does not load torch. Nothing here imports the sandbox: it is reached through plug-in strings.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "Category": "policy",
    "Policy": "policy",
    "default_policy": "policy",
    "load_policy": "policy",
    "GuardClassifier": "guard",
    "JudgeGuard": "guard",
    "threshold_for_precision": "guard",
    "precision_recall": "guard",
    "filter_records": "moderate",
    "flag_rates": "moderate",
    "judge_flip_rates": "judge_attack",
    "attack_success_rates": "attacks",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
