"""The one dataset loader on data as the Hub publishes it: raw files of script datasets (APPS), clear errors.

The Hub is the true external boundary here: `hf_hub_download` is replaced by a function serving files from a
local folder laid out as the real `codeparrot/apps` repo (its `apps.py` loading script beside the raw
`train.jsonl` / `test.jsonl`, rows with the published columns and quirks: JSON-encoded `solutions` and
`input_output`, an empty `input_output`, call-based problems with `fn_name`, starter code).
"""

import json

import datasets
import huggingface_hub
import pytest
from conftest import REPO_ROOT
from hydra import compose, initialize_config_dir

from reward_transfer.data import as_pairs, load_table
from reward_transfer.errors import UserError
from reward_transfer.generation.pipeline import to_settings
from reward_transfer.generation.problems import load_problems

APPS_ROWS = {
    "train.jsonl": [
        {"problem_id": 0, "question": "Read n and print n + 1.", "solutions": json.dumps(["print(int(input()) + 1)"]),
         "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]}), "difficulty": "introductory",
         "url": "https://codeforces.com/problemset/problem/1/A", "starter_code": ""},
        {"problem_id": 1, "question": "No tests were published for this one.", "solutions": json.dumps([]),
         "input_output": "", "difficulty": "interview", "url": "https://example.invalid/1", "starter_code": ""},
    ],
    "test.jsonl": [
        {"problem_id": 3000, "question": "Return the sum of a list.", "solutions": json.dumps(["class Solution: ..."]),
         "input_output": json.dumps({"fn_name": "total", "inputs": [[[1, 2]]], "outputs": [3]}),
         "difficulty": "competition", "url": "https://leetcode.com/problems/x",
         "starter_code": "class Solution:\n    def total(self, nums):\n"},
    ],
}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A local folder standing in for the Hub's codeparrot/apps repo; downloads are counted."""
    repo = tmp_path / "hub" / "codeparrot" / "apps"
    repo.mkdir(parents=True)
    (repo / "apps.py").write_text("import datasets  # the loading script datasets>=4 refuses to run\n")
    for name, rows in APPS_ROWS.items():
        (repo / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    calls = []

    def hf_hub_download(repo_id, filename, repo_type=None, revision=None, **_):
        calls.append((repo_id, filename, repo_type, revision))
        path = tmp_path / "hub" / repo_id / filename
        if repo_type != "dataset" or not path.exists():
            raise huggingface_hub.errors.EntryNotFoundError(f"{repo_id}/{filename}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_hub_data_files_are_read_with_the_builder_their_suffix_names(fake_hub):
    table = load_table("hf://datasets/codeparrot/apps/train.jsonl")
    assert table.num_rows == 2 and "input_output" in table.column_names
    load_table("hf://datasets/codeparrot/apps@v1.0/test.jsonl")
    assert fake_hub == [("codeparrot/apps", "train.jsonl", "dataset", None),
                        ("codeparrot/apps", "test.jsonl", "dataset", "v1.0")]
    with pytest.raises(UserError, match=r"cannot download hf://datasets/codeparrot/apps/valid.jsonl"):
        load_table("hf://datasets/codeparrot/apps/valid.jsonl")
    with pytest.raises(UserError, match="not a Hub data file"):
        load_table("hf://codeparrot/apps")


def test_the_paper_code_config_reads_apps_raw_files(fake_hub):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "generate_preference_data"), version_base="1.3"):
        cfg = compose(config_name="code", overrides=["dataset.eval_pairs=null", "dataset.eval_size=1"])
    problems, skipped = load_problems(to_settings(cfg))
    assert sorted(p.problem for p in problems) == ["Read n and print n + 1.", "Return the sum of a list."]
    assert dict(skipped) == {"input_output is not valid JSON with test cases": 1}
    call_based = next(p for p in problems if p.reference.get("fn_name"))
    assert call_based.reference == {"fn_name": "total", "inputs": [[[1, 2]]], "outputs": [3]}
    assert "class Solution:" in call_based.prompt


def test_a_script_dataset_is_refused_with_the_data_file_route(monkeypatch):
    def load_dataset(name, *args, **kwargs):  # what datasets>=4 raises for a repo with a loading script
        raise RuntimeError(f"Dataset scripts are no longer supported, but found {name.split('/')[-1]}.py")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(UserError, match=r"loading-script dataset.*hf://datasets/codeparrot/apps/train.jsonl"):
        load_table("codeparrot/apps", split="train")


def test_an_empty_file_says_it_is_empty(tmp_path):
    empty = tmp_path / "pairs.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match=r"pairs\.jsonl: the file is empty$"):
        load_table(str(empty))


def test_splits_of_a_local_file_are_honoured_or_refused(tmp_path):
    rows = [{"problem": f"p{i}", "accepted": "a", "rejected": "r", "split": "eval" if i % 3 == 0 else "train"}
            for i in range(9)]
    with_column = tmp_path / "pairs.jsonl"
    with_column.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert load_table(str(with_column), "eval")["problem"] == ["p0", "p3", "p6"]
    assert len(load_table(str(with_column), "train")) == 6
    with pytest.raises(UserError, match="no rows with split 'test'"):
        load_table(str(with_column), "test")
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "split"}) + "\n" for row in rows))
    assert len(load_table(str(plain), "train")) == 9
    with pytest.raises(UserError, match="split 'eval' needs a file of its own or a 'split' column"):
        load_table(str(plain), "eval")


# ------------------------------------------------------------------ preference data in TRL / RewardBench format
def test_rewardbench_and_trl_string_columns_become_pairs():
    table = datasets.Dataset.from_list([{"prompt": "2+2?", "chosen": "4", "rejected": "5", "subset": "math-prm"}])
    pairs = as_pairs(table, "rb.jsonl")
    assert pairs[0] == {"subset": "math-prm", "problem": "2+2?", "accepted": "4", "rejected": "5"}


def test_conversational_pairs_explicit_and_implicit_prompt():
    user = [{"role": "user", "content": "Name a prime."}]
    explicit = datasets.Dataset.from_list([{"prompt": user, "chosen": [{"role": "assistant", "content": "7"}],
                                            "rejected": [{"role": "assistant", "content": "8"}]}])
    assert as_pairs(explicit, "x")[0] == {"problem": "Name a prime.", "accepted": "7", "rejected": "8"}
    multi = [{"role": "system", "content": "Be brief."}, *user]
    implicit = datasets.Dataset.from_list([{"chosen": [*multi, {"role": "assistant", "content": "7"}],
                                            "rejected": [*multi, {"role": "assistant", "content": "8"}]}])
    row = as_pairs(implicit, "x")[0]
    assert row["problem"] == multi and row["accepted"] == "7"  # a multi-turn prompt stays a conversation
    mismatched = datasets.Dataset.from_list([{"chosen": [*user, {"role": "assistant", "content": "7"}],
                                              "rejected": [*multi, {"role": "assistant", "content": "8"}]}])
    with pytest.raises(UserError, match="row 0: the chosen and rejected conversations start with different turns"):
        as_pairs(mismatched, "x")


def test_configured_column_names_and_bad_roles():
    table = datasets.Dataset.from_list([{"question": "q", "good": "a", "bad": "b"}])
    assert as_pairs(table, "x", {"problem": "question", "accepted": "good", "rejected": "bad"})[0] == {
        "problem": "q", "accepted": "a", "rejected": "b"}
    with pytest.raises(UserError, match=r"missing column.*chosen"):
        as_pairs(table, "x", {"problem": "question"})
    with pytest.raises(UserError, match="unknown role"):
        as_pairs(table, "x", {"answer": "good"})
    with pytest.raises(UserError, match="row 0, column chosen: expected a string or a message list"):
        as_pairs(datasets.Dataset.from_list([{"prompt": "p", "chosen": 3, "rejected": "r"}]), "x")
