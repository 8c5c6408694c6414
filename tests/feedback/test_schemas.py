"""Every task type's answer schema: good answers pass (normalised), bad ones name the field."""

import pytest

from alignkit.feedback.schemas import InvalidAnswer, label_of, validate_answer

GOOD = [
    ("write_prompt", {"text": "Tell me about rivers."}, None),
    ("verify_prompt", {"accept": False, "reason": "not a question"}, "reject"),
    ("write_completion", {"text": "Rivers flow.", "domain": "geography"}, None),
    ("review_completion", {"decision": "edit", "edited_text": "Better."}, "edit"),
    ("compare", {"overall": "tie", "criteria": {"helpful": "A", "brand_tone": "B"}, "harms": ["hate"]}, "tie"),
    ("rank", {"order": [2, 0, 1]}, (2, 0, 1)),
    ("rate", {"score": 5}, 5),
    ("binary", {"good": True}, True),
    ("rules", {"violations": {"no_insults": True, "no_medical_advice": False}}, ("no_insults",)),
    ("qa", {"answers": {"q1": "yes", "q2": "because"}}, (("q1", "yes"), ("q2", "because"))),
]
PAYLOAD = {
    "criteria": ["helpful", "honest", "harmless", "brand_tone"],
    "harms": ["hate", "bias"],
    "k": 3,
    "scale": [1, 7],
    "rules": ["no_insults", "no_medical_advice"],
    "questions": [{"id": "q1", "options": ["yes", "no"]}, {"id": "q2"}],
}


@pytest.mark.parametrize("task_type,answer,label", GOOD)
def test_good_answers(task_type, answer, label):
    clean = validate_answer(task_type, answer, PAYLOAD)
    assert label_of(task_type, clean) == label


BAD = [
    ("write_prompt", {"text": "   "}, "text: text is blank"),
    ("verify_prompt", {"accept": False}, "a rejected prompt needs a reason"),
    ("write_completion", {"text": "x"}, "domain: Field required"),
    ("review_completion", {"decision": "edit"}, "needs edited_text"),
    ("review_completion", {"decision": "maybe"}, "decision: Input should be 'accept', 'edit' or 'reject'"),
    ("compare", {"overall": "A", "criteria": {"tone": "A"}}, "criteria.tone: not a criterion"),
    ("compare", {"overall": "A", "harms": ["weather"]}, "'weather' is not a harm category"),
    ("compare", {"overall": "A", "extra": 1}, "extra: Extra inputs are not permitted"),
    ("rank", {"order": [0, 1]}, "permutation of 0..2"),
    ("rate", {"score": 9}, "score must be in 1..7"),
    ("binary", {"good": "perhaps"}, "good: Input should be a valid boolean"),
    ("rules", {"violations": {"no_insults": True}}, "missing ['no_medical_advice']"),
    ("qa", {"answers": {"q1": "maybe", "q2": "x"}}, "answers.q1: 'maybe' is not one of ['yes', 'no']"),
]


@pytest.mark.parametrize("task_type,answer,message", BAD)
def test_bad_answers_name_the_field(task_type, answer, message):
    with pytest.raises(InvalidAnswer) as err:
        validate_answer(task_type, answer, PAYLOAD)
    assert message in str(err.value) and str(err.value).startswith(f"{task_type} answer:")


def test_unknown_type_and_non_object():
    with pytest.raises(InvalidAnswer, match="unknown task type 'dance'"):
        validate_answer("dance", {})
    with pytest.raises(InvalidAnswer, match="expected a JSON object, got list"):
        validate_answer("binary", [True])
