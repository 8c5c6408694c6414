"""Dataset shapes read the way TRL reads them (plus HH-RLHF and UltraFeedback), and ambiguous shapes refused."""

from __future__ import annotations

import datasets
import pytest
from data_shapes import (
    assistant,
    explicit_standard,
    hh_rlhf,
    implicit_conversational,
    implicit_standard,
    text_rows,
    ultrafeedback_binarized,
    ultrafeedback_fine_grained,
    user,
    write_jsonl,
)

from alignkit.data.conversions import ratings_to_pairs
from alignkit.data.formats import (
    ShapeError,
    default_eval_split,
    detect_shape,
    extract_prompt,
    hh_to_messages,
    messages_to_hh,
    normalize_row,
    prompt_of,
    ultrafeedback_ratings,
)
from alignkit.data.io import DataError, read_records
from alignkit.data.pairs import read_pairs
from alignkit.train.config import DPOConfig, SFTConfig

# --------------------------------------------------------------------------- implicit prompts (TRL's extract_prompt)


def test_implicit_standard_prompt_is_the_shared_prefix_cut_at_whitespace():
    assert extract_prompt("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    # TRL would cut after "bl" (the first differing character); we never split a word.
    assert extract_prompt("The sky is blue.", "The sky is black.") == ("The sky is", " blue.", " black.")
    # one answer extends the other
    assert extract_prompt("Say: yes", "Say: yes please") == ("Say:", " yes", " yes please")


def test_implicit_conversational_prompt_is_the_shared_turns():
    chosen = [user("hi"), assistant("hello"), user("2+2?"), assistant("4")]
    rejected = [user("hi"), assistant("hello"), user("2+2?"), assistant("5")]
    prompt, c, r = extract_prompt(chosen, rejected)
    assert prompt == chosen[:3] and c == [assistant("4")] and r == [assistant("5")]
    # answers diverging inside an assistant turn's content still start at that assistant turn
    p2, c2, _ = extract_prompt([user("q"), assistant("a"), user("x")], [user("q"), assistant("b")])
    assert p2 == [user("q")] and c2 == [assistant("a"), user("x")]


def test_implicit_pairs_without_a_shared_prompt_are_errors_that_say_what_to_add():
    with pytest.raises(ShapeError, match="add a 'prompt' column"):
        normalize_row({"chosen": "Yes.", "rejected": "No."})
    with pytest.raises(ShapeError, match="add a 'prompt' column"):
        normalize_row({"chosen": [assistant("a")], "rejected": [assistant("b")]})


def test_every_trl_preference_shape_reads_to_the_same_pairs(tmp_path):
    expected = [(r["prompt"], r["chosen"], r["rejected"]) for r in explicit_standard()]
    for name, rows in [("explicit", explicit_standard()), ("implicit", implicit_standard())]:
        pairs, skipped = read_pairs(write_jsonl(tmp_path / f"{name}.jsonl", rows), "raise")
        got = [(p["prompt"], p["chosen"].strip(), p["rejected"].strip()) for p in pairs]
        assert got == expected and not skipped, name
    for name, rows in [("conv", implicit_conversational()), ("ufb", ultrafeedback_binarized())]:
        pairs, _ = read_pairs(write_jsonl(tmp_path / f"{name}.jsonl", rows), "raise")
        got = [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
        assert got == [([user(p)], [assistant(c)], [assistant(r)]) for p, c, r in expected], name


# --------------------------------------------------------------------------- prompt-repeated conversations


def test_ultrafeedback_binarized_keeps_one_copy_of_the_prompt_and_its_extra_fields():
    row = ultrafeedback_binarized(1)[0]
    assert detect_shape(row).name.startswith("prompt-repeated conversations")
    out = normalize_row(row)
    assert out["prompt"] == [user("What is 1 plus 1?")]
    assert out["chosen"] == [assistant("1 plus 1 is 2. Happy to help!")]
    assert [m["role"] for m in out["prompt"] + out["chosen"]] == ["user", "assistant"]  # one user turn
    assert out["score_chosen"] == 9.0 and out["prompt_id"] == "id11"


def test_prompt_repeated_conversations_that_disagree_with_the_prompt_are_errors():
    row = ultrafeedback_binarized(1)[0] | {"prompt": "Some other question?"}
    with pytest.raises(ShapeError, match="differs from it") as err:
        normalize_row(row)
    assert "drop the 'prompt' column" in str(err.value)
    mixed = ultrafeedback_binarized(1)[0]
    mixed["rejected"] = [assistant("5")]  # one side repeats the prompt, the other does not
    with pytest.raises(ShapeError, match="some answers start with the prompt"):
        normalize_row(mixed)


def test_conversational_prompt_repeated_in_the_answers_is_stripped_once():
    prompt = [{"role": "system", "content": "Be brief."}, user("2+2?")]
    row = {"prompt": prompt, "chosen": [*prompt, assistant("4")], "rejected": [*prompt, assistant("5")]}
    out = normalize_row(row)
    assert out["prompt"] == prompt and out["chosen"] == [assistant("4")] and out["rejected"] == [assistant("5")]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [user("a"), assistant("b")], "chosen": "x", "rejected": "y"}, "one shape per row"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "completion": "c"}, "one shape per row"),
        ({"prompt": "q", "chosen": [assistant("a")], "rejected": "b"}, "both as strings"),
        ({"question": "q", "answer": "a"}, "a row in a known shape"),
        ({"text": "\n\nHuman: hi\n\nAssistant: hello"}, "give it as 'chosen'"),
    ],
)
def test_ambiguous_or_unknown_shapes_say_what_was_seen_and_how_to_convert(row, message):
    with pytest.raises(ShapeError, match=message):
        normalize_row(row)


def test_shape_errors_name_file_and_line_and_bad_rows_stop_by_default(tmp_path):
    rows = explicit_standard(3) + [{"question": "q", "answer": "a"}] + explicit_standard(2)
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(DataError) as err:
        read_pairs(path, DPOConfig(data=path, output=tmp_path / "o").on_bad_record)
    assert err.value.line == 4 and "columns ['answer', 'question']" in str(err.value)
    pairs, skipped = read_pairs(path, "skip")
    assert len(pairs) == 5 and sum(skipped.values()) == 1


# --------------------------------------------------------------------------- HH-RLHF raw


def test_hh_rlhf_converts_losslessly_multi_turn_included():
    for row in hh_rlhf(3):
        for side in ("chosen", "rejected"):
            messages = hh_to_messages(row[side])
            assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
            assert messages_to_hh(messages) == row[side]  # byte for byte
        out = normalize_row(row)
        assert [m["role"] for m in out["prompt"]] == ["user", "assistant", "user"]
        assert messages_to_hh(out["prompt"] + out["chosen"]) == row["chosen"]
        assert messages_to_hh(out["prompt"] + out["rejected"]) == row["rejected"]
    tricky = "\n\nHuman: line one\nline two  \n\nAssistant:  two spaces kept\n\nHuman: ok"
    assert messages_to_hh(hh_to_messages(tricky)) == tricky
    assert hh_to_messages(tricky)[1]["content"] == " two spaces kept"


# --------------------------------------------------------------------------- UltraFeedback fine-grained


def test_ultrafeedback_ranks_by_mean_aspect_rating_and_gives_ratings_rows():
    row = ultrafeedback_fine_grained(1)[0]
    out = normalize_row(row)
    # means: m1 (2+3+2)/3 = 2.333 (N/A left out), m2 4.75, m3 4.0 -> best first m2, m3, m1
    assert out["completion_models"] == ["m2", "m3", "m1"]
    assert out["scores"] == pytest.approx([4.75, 4.0, 7 / 3])
    assert out["prompt"] == "What is 1 plus 1?" and out["source"] == "arith"
    by_honesty = normalize_row(row, score="honesty")
    assert by_honesty["completion_models"] == ["m2", "m3", "m1"] and by_honesty["scores"] == [5.0, 4.0, 3.0]
    ratings = ultrafeedback_ratings(row)
    assert [r["rating"] for r in ratings] == pytest.approx([7 / 3, 4.75, 4.0])
    pairs = ratings_to_pairs(ratings, min_gap=0.5)
    assert len(pairs) == 3 and all(p["chosen_rating"] > p["rejected_rating"] for p in pairs)


# --------------------------------------------------------------------------- TRL language modeling and DatasetDict folders


def test_text_rows_are_sft_records(tmp_path):
    loaded = read_records(write_jsonl(tmp_path / "t.jsonl", text_rows(3)), kind="sft")
    assert loaded.records[0]["text"].startswith("What is 1 plus 1?")


def test_dataset_dict_folder_trains_on_train_and_evaluates_on_test(tmp_path):
    folder = tmp_path / "dd"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(explicit_standard(8)), "test": datasets.Dataset.from_list(explicit_standard(12)[8:])}
    ).save_to_disk(str(folder))
    assert default_eval_split(folder) == folder / "test"
    assert len(read_records(folder).records) == 8
    assert len(read_records(folder / "test").records) == 4
    config = SFTConfig(data=folder, output=tmp_path / "o")
    assert config.eval_data == folder / "test"
    assert SFTConfig(data=folder, output=tmp_path / "o", eval_data=folder / "train").eval_data == folder / "train"
    two = tmp_path / "two"
    datasets.DatasetDict(
        {"a": datasets.Dataset.from_list(explicit_standard(2)), "b": datasets.Dataset.from_list(explicit_standard(2))}
    ).save_to_disk(str(two))
    with pytest.raises(DataError, match="'train' split"):
        read_records(two)


def test_null_columns_count_as_absent_as_in_parquet_files_with_mixed_rows(tmp_path):
    rows = [r | {"prompt": None, "completion": None} for r in implicit_standard(3)]
    path = tmp_path / "mixed.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    pairs, _ = read_pairs(path, "raise")
    assert [p["prompt"] for p in pairs] == ["What is 1 plus 1?", "What is 1 plus 2?", "What is 1 plus 3?"]


def test_hh_rlhf_with_an_explicit_prompt_and_sft_completions_repeating_the_prompt():
    row = {"prompt": "\n\nHuman: 2+2?\n\nAssistant:", "chosen": " 4", "rejected": " 5"}
    out = normalize_row(row)
    assert out["prompt"] == [user("2+2?")] and out["chosen"] == [assistant("4")] and out["rejected"] == [assistant("5")]
    sft = normalize_row({"prompt": "2+2?", "completion": [user("2+2?"), assistant("4")]})
    assert sft["prompt"] == [user("2+2?")] and sft["completion"] == [assistant("4")]


def test_prompt_of_any_shape_for_rl_prompt_sets():
    assert prompt_of(hh_rlhf(1)[0]) == [user("Hi, can you do sums?"), assistant("Yes, ask me one."), user("What is 1 plus 1?")]
    assert prompt_of(ultrafeedback_fine_grained(1)[0]) == "What is 1 plus 1?"
    assert prompt_of({"prompt": "q"}) == "q" and prompt_of({"question": "q"}) is None
