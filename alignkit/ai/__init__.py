"""AI feedback: chat backends, an OpenAI-compatible server, constitutions, SL-CAI, AI preference
labels (RL-CAI/RLAIF), judges and a simulated AI labeler for the sandbox.

Everything here talks to a model through :class:`ChatBackend` (``chat`` and ``option_logprobs``),
so the same code runs on a local model and on any OpenAI-compatible endpoint.
"""

from alignkit.ai.backend import ChatBackend, LocalBackend, softmax_options
from alignkit.ai.cai import CAIRound, CAITrace, pair_records, run_sl_cai, sft_records, write_cai_outputs
from alignkit.ai.constitution import Constitution, Principle, load_constitution
from alignkit.ai.judge import (
    GradeVerdict,
    Judge,
    PairwiseVerdict,
    consistency_rate,
    escape_markers,
    injection_flip_rate,
    injection_flips,
    judge_pairs,
)
from alignkit.ai.labeling import (
    AILabel,
    AIPreferenceLabeler,
    mix_preference_data,
    preference_records,
    route_low_confidence,
)
from alignkit.ai.openai_backend import BackendError, OpenAIBackend, option_logprobs_from_response
from alignkit.ai.simulated import SimulatedAILabeler

__all__ = [
    "AILabel", "AIPreferenceLabeler", "BackendError", "CAIRound", "CAITrace", "ChatBackend", "Constitution",
    "GradeVerdict", "Judge", "LocalBackend", "OpenAIBackend", "PairwiseVerdict", "Principle", "SimulatedAILabeler",
    "consistency_rate", "escape_markers", "injection_flip_rate", "injection_flips", "judge_pairs",
    "load_constitution", "mix_preference_data", "option_logprobs_from_response", "pair_records",
    "preference_records", "route_low_confidence", "run_sl_cai", "sft_records", "softmax_options",
    "write_cai_outputs",
]
