"""AI feedback: chat backends, an OpenAI-compatible server, constitutions, SL-CAI, AI preference
labels (RL-CAI/RLAIF), judges and a simulated AI labeler for the sandbox.

Everything here talks to a model through :class:`ChatBackend` (``chat`` and ``option_logprobs``),
so the same code runs on a local model and on any OpenAI-compatible endpoint.


Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "ChatBackend": "backend",
    "LocalBackend": "backend",
    "softmax_options": "backend",
    "CAIRound": "cai",
    "CAITrace": "cai",
    "pair_records": "cai",
    "run_sl_cai": "cai",
    "sft_records": "cai",
    "write_cai_outputs": "cai",
    "Constitution": "constitution",
    "Principle": "constitution",
    "load_constitution": "constitution",
    "GradeVerdict": "judge",
    "Judge": "judge",
    "PairwiseVerdict": "judge",
    "consistency_rate": "judge",
    "escape_markers": "judge",
    "injection_flip_rate": "judge",
    "injection_flips": "judge",
    "judge_pairs": "judge",
    "AILabel": "labeling",
    "AIPreferenceLabeler": "labeling",
    "mix_preference_data": "labeling",
    "preference_records": "labeling",
    "route_low_confidence": "labeling",
    "BackendError": "openai_backend",
    "OpenAIBackend": "openai_backend",
    "option_logprobs_from_response": "openai_backend",
    "SimulatedAILabeler": "simulated",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
