"""`generate_preference_data.py` as a user runs it: a real subprocess per case (bad inputs, kill -9 and resume)."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT
from datasets import load_from_disk
from hydra import compose, initialize_config_dir

from reward_transfer.generation import generate_preference_data

SCRIPT = str(REPO_ROOT / "generate_preference_data.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "WANDB_MODE": "disabled"}


def run(*overrides: str, config: str = "demo_math") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, f"--config-name={config}", "progress=false", *overrides],
                          cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_unknown_config_key_is_an_error(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "generation.temprature=0.5")
    assert result.returncode == 1
    assert "temprature" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_dataset_path_that_does_not_exist(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "dataset.datasets=[{name_or_path: data/no_such_file.jsonl}]")
    assert_one_line_error(result, "data/no_such_file.jsonl", "does not exist")
    assert not (tmp_path / "out").exists()


def test_missing_column_names_it_and_lists_the_columns(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "dataset.columns.problem=question")
    assert_one_line_error(result, "missing column(s) question", "columns are: source, problem, solution")
    assert not (tmp_path / "out").exists()


def test_empty_dataset_after_sampling(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "dataset.max_examples=0")
    assert_one_line_error(result, "dataset.max_examples: must be positive or null, got 0")
    assert not (tmp_path / "out").exists()


def test_invalid_input_output_json_is_skipped_with_a_count(tmp_path):
    good = {"question": "Print the sum of two integers a and b given on one line.",
            "input_output": json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}),
            "starter_code": ""}
    broken = {**good, "question": "Another problem", "input_output": '{"inputs": ["1"'}
    problems = write_jsonl(tmp_path / "code.jsonl", [good, broken])
    replay = write_jsonl(tmp_path / "replay.jsonl", [{"problem": good["question"], "responses": [
        "```python\na, b = map(int, input().split())\nprint(a + b)\n```", "```python\nprint(3)\n```",
        "```python\nprint(0)\n```"]}])
    common = [f"dataset.datasets=[{{name_or_path: {problems}}}]", f"generation.replay_path={replay}",
              "dataset.eval_fraction=0.0"]
    result = run(*common, f"output_dir={tmp_path / 'out'}", config="demo_code")
    assert result.returncode == 0, result.stderr
    assert "skipped: 1 input_output is not valid JSON with test cases" in result.stdout
    pairs = load_from_disk(str(tmp_path / "out"))["train"]
    scores = sorted(zip(pairs["accepted_score"], pairs["rejected_score"], strict=True))
    assert scores == [(0.5, 0.0), (1.0, 0.0), (1.0, 0.5)]

    write_jsonl(problems, [broken])
    result = run(*common, f"output_dir={tmp_path / 'out2'}", config="demo_code")
    assert_one_line_error(result, "no usable problems", "1 input_output is not valid JSON")
    assert not (tmp_path / "out2").exists()


def test_hub_model_while_offline_says_how_to_point_at_a_local_path(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "generation.backend=transformers",
                 "model.model_name_or_path=meta-llama/Llama-3.1-8B-Instruct")
    assert_one_line_error(result, "meta-llama/Llama-3.1-8B-Instruct", "offline", "local path")
    assert not (tmp_path / "out").exists()


def test_hub_dataset_while_offline_says_how_to_point_at_a_local_path(tmp_path):
    result = run(f"output_dir={tmp_path / 'out'}", "dataset.datasets=[{name_or_path: AI-MO/NuminaMath-CoT}]")
    assert_one_line_error(result, "AI-MO/NuminaMath-CoT", "Offline?", "local directory or file")
    assert not (tmp_path / "out").exists()


def _wait_for(path, process, deadline_s=120.0):
    give_up = time.monotonic() + deadline_s
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < give_up, f"{path} never appeared"
        time.sleep(0.05)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_dataset(tmp_path):
    settings = ["dataset.max_examples=12", "generation.problems_per_batch=2"]
    killed = tmp_path / "killed"
    # Two interrupted runs (the second resumes the first), then a final resume. replay_delay_s (a documented
    # test hook) slows the replay backend so each kill lands mid-run.
    for commit_marker in ("shard-000000.done.json", "shard-000003.done.json"):
        process = subprocess.Popen(
            [sys.executable, SCRIPT, "--config-name=demo_math", "progress=false", f"output_dir={killed}", *settings,
             "generation.replay_delay_s=0.25"],
            cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(killed / ".work" / "shards" / commit_marker, process)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
        assert process.returncode == -signal.SIGKILL
        assert not (killed / "dataset_dict.json").exists()

    resumed = run(f"output_dir={killed}", *settings)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((killed / "generation_manifest.json").read_text())["summary"]
    assert 0 < summary["generated_this_run"] < 12 * 8, "the resumed run continued, it did not start over"

    reference = tmp_path / "reference"
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs/generate_preference_data"), version_base="1.3"):
        cfg = compose(config_name="demo_math", overrides=[f"output_dir={reference}", "progress=false", *settings])
    generate_preference_data(cfg)

    for sub in ("", "candidates"):
        got, want = load_from_disk(str(killed / sub)), load_from_disk(str(reference / sub))
        if sub:
            assert got.to_list() == want.to_list()
        else:
            for split in ("train", "eval"):
                assert got[split].to_list() == want[split].to_list()
                assert len(set(got[split]["pair_id"])) == len(got[split])
    assert not (killed / ".work").exists()


def test_rerunning_a_complete_output_exits_0_untouched(tmp_path):
    out = tmp_path / "out"
    overrides = [f"output_dir={out}", "dataset.max_examples=4"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs/generate_preference_data"), version_base="1.3"):
        generate_preference_data(compose(config_name="demo_math", overrides=[*overrides, "progress=false"]))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = run(*overrides)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_huge_integers_in_a_spec_load_and_an_unreadable_spec_is_a_skipped_row(tmp_path):
    """A 5000-digit JSON number (over Python's 4300-digit default) is a valid spec; a spec nested beyond the
    JSON parser's depth is one skipped, counted row, not a traceback that aborts loading."""
    big = "9" * 5000
    huge = {"question": "Print the number given on one line plus one.",
            "input_output": '{"inputs": [' + big + '], "outputs": [1' + "0" * 5000 + "]}", "starter_code": ""}
    nested = {**huge, "question": "A nested one",
              "input_output": '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + ', "outputs": ["1"]}'}
    problems = write_jsonl(tmp_path / "code.jsonl", [huge, nested])
    replay = write_jsonl(tmp_path / "replay.jsonl", [{"problem": huge["question"], "responses": [
        "```python\nprint(int(input()) + 1)\n```", "```python\nprint(int(input()))\n```"]}])
    result = run(f"dataset.datasets=[{{name_or_path: {problems}}}]", f"generation.replay_path={replay}",
                 "dataset.eval_fraction=0.0", f"output_dir={tmp_path / 'out'}", config="demo_code")
    assert result.returncode == 0, result.stderr
    assert "skipped: 1 input_output is not valid JSON with test cases" in result.stdout
    pairs = load_from_disk(str(tmp_path / "out"))["train"]
    assert list(zip(pairs["accepted_score"], pairs["rejected_score"], strict=True)) == [(1.0, 0.0)]
