"""The generation stage in-process, as reproduce.py calls it: outputs, every backend, resume guards."""

import json
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest
from conftest import REPO_ROOT
from datasets import load_from_disk
from hydra import compose, initialize_config_dir

from reward_transfer.errors import UserError
from reward_transfer.generation import generate_preference_data
from reward_transfer.generation.pipeline import to_settings
from reward_transfer.generation.problems import problem_seed, stable_hash

CONFIG_DIR = str(REPO_ROOT / "configs" / "generate_preference_data")


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def addition_problems(tmp_path):
    """Four tiny math problems "What is a plus b?" with NuminaMath-style solutions."""
    rows = [{"problem": f"What is {a} plus {b}?", "solution": f"We add: {a} + {b} = {a + b}. $\\boxed{{{a + b}}}$"}
            for a, b in [(1, 2), (3, 4), (10, 5), (7, 7)]]
    return write_jsonl(tmp_path / "add.jsonl", rows)


def test_paper_configs_compose_with_the_papers_settings():
    math_cfg = compose_config("math", [])
    code_cfg = compose_config("code", [])
    for cfg in (math_cfg, code_cfg):
        assert cfg.model.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
        assert cfg.generation.backend == "vllm"
        assert (cfg.generation.temperature, cfg.generation.top_k, cfg.generation.top_p) == (0.9, 10000, 1.0)
        assert cfg.generation.max_new_tokens == 4096
        assert cfg.huggingface.push_to_hub is False and cfg.logging.wandb is False
    assert math_cfg.generation.num_samples_per_problem == 8
    assert math_cfg.preference.max_number_of_preferences_per_problem == 4
    assert math_cfg.dataset.datasets[0].name_or_path == "AI-MO/NuminaMath-CoT"
    assert code_cfg.generation.num_samples_per_problem == 16
    assert code_cfg.preference.max_number_of_preferences_per_problem == 16
    assert [d.name_or_path for d in code_cfg.dataset.datasets] == ["hf://datasets/codeparrot/apps/train.jsonl",
                                                                   "hf://datasets/codeparrot/apps/test.jsonl"]
    assert math_cfg.dataset.eval_pairs == code_cfg.dataset.eval_pairs == 9000  # the paper's ~9k eval pairs
    assert to_settings(math_cfg).dataset.columns == {"problem": "problem", "solution": "solution"}  # validates all
    assert to_settings(code_cfg).dataset.columns["tests"] == "input_output"


def test_demo_math_writes_pairs_and_candidates(tmp_path):
    out = tmp_path / "math"
    cfg = compose_config("demo_math", [f"output_dir={out}", "progress=false"])
    assert generate_preference_data(cfg) == out

    pairs = load_from_disk(str(out))
    assert set(pairs) == {"train", "eval"}
    assert len(pairs["train"]) >= 100
    for column in ("problem", "accepted", "rejected", "pair_id", "problem_id", "domain",
                   "accepted_score", "rejected_score"):
        assert column in pairs["train"].column_names
    train, evaluation = pairs["train"].to_list(), pairs["eval"].to_list()
    assert all(r["accepted_score"] == 1.0 and r["rejected_score"] == 0.0 for r in train + evaluation)
    assert not {r["problem_id"] for r in train} & {r["problem_id"] for r in evaluation}
    assert max(Counter(r["problem_id"] for r in train).values()) <= 4
    assert len({r["pair_id"] for r in train + evaluation}) == len(train) + len(evaluation)

    candidates = load_from_disk(str(out / "candidates"))
    for column in ("problem_id", "problem", "split", "domain", "candidate_index", "response", "score", "correct"):
        assert column in candidates.column_names
    problems = {json.loads(line)["problem"] for line in (REPO_ROOT / "data/replay_math.jsonl").open()}
    assert set(candidates["problem"]) == problems
    assert len(candidates) == 8 * len(problems)
    by_problem = {r["problem_id"]: r["split"] for r in candidates.to_list()}
    assert all(by_problem[r["problem_id"]] == "eval" for r in evaluation)
    # Every pair's texts are candidates of its problem with the recorded scores.
    scores = {(r["problem_id"], r["response"]): r["score"] for r in candidates.to_list()}
    assert all(scores[(r["problem_id"], r["accepted"])] == r["accepted_score"] for r in train)


def test_demo_code_scores_share_of_tests_passed(tmp_path):
    out = tmp_path / "code"
    cfg = compose_config("demo_code", [f"output_dir={out}", "progress=false", "dataset.max_examples=5",
                                       "dataset.eval_fraction=0.0"])
    generate_preference_data(cfg)
    pairs = load_from_disk(str(out))
    candidates = load_from_disk(str(out / "candidates")).to_list()
    assert len(pairs["eval"]) == 0 and len(pairs["train"]) > 0
    assert all(c["score"] == c["passed"] / c["total"] and c["correct"] == (c["passed"] == c["total"])
               for c in candidates)
    assert all(r["accepted_score"] > r["rejected_score"] for r in pairs["train"])
    assert {c["score"] for c in candidates} - {0.0, 1.0}, "partial credit exists among the candidates"


def test_replay_missing_problems_error_or_skip_with_a_count(tmp_path, addition_problems):
    replay = write_jsonl(tmp_path / "replay.jsonl", [
        {"problem": "What is 1 plus 2?", "responses": ["$\\boxed{3}$", "$\\boxed{4}$"]},
        {"problem": "What is 3 plus 4?", "responses": ["$\\boxed{7}$", "$\\boxed{8}$"]},
    ])
    base = [f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "dataset.eval_fraction=0.0",
            f"generation.replay_path={replay}", "generation.num_samples_per_problem=2", "progress=false"]
    with pytest.raises(UserError, match="no responses for 2 of 4 problems"):
        generate_preference_data(compose_config("demo_math", [*base, f"output_dir={tmp_path / 'a'}"]))
    assert not (tmp_path / "a").exists()

    out = tmp_path / "b"
    generate_preference_data(compose_config("demo_math", [*base, f"output_dir={out}",
                                                          "generation.replay_missing=skip"]))
    manifest = json.loads((out / "generation_manifest.json").read_text())
    assert manifest["summary"]["skipped"] == {"problem missing from the replay file": 2}
    assert len(load_from_disk(str(out))["train"]) == 2


def test_malformed_replay_file_names_file_and_line(tmp_path, addition_problems):
    replay = tmp_path / "replay.jsonl"
    replay.write_text('{"problem": "What is 1 plus 2?", "responses": ["3"]}\n{"problem": "x", "responses": "3"}\n')
    cfg = compose_config("demo_math", [f"dataset.datasets=[{{name_or_path: {addition_problems}}}]",
                                       f"generation.replay_path={replay}", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(UserError, match=r"replay.jsonl:2: expected"):
        generate_preference_data(cfg)
    assert not (tmp_path / "out").exists()


class _ChatServer(BaseHTTPRequestHandler):
    """A stand-in OpenAI-compatible server: answers "What is a plus b?" right on even choices, wrong on odd."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        a, b = map(int, re.findall(r"What is (\d+) plus (\d+)", body["messages"][-1]["content"])[0])
        choices = [{"index": i, "finish_reason": "stop",
                    "message": {"role": "assistant",
                                "content": f"Sample {i} (seed {body['seed']}): $\\boxed{{{a + b + i % 2}}}$"}}
                   for i in range(body["n"])]
        payload = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": choices,
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_backend_against_a_local_http_server(tmp_path, addition_problems):
    # A real HTTP server on 127.0.0.1 stands in for `vllm serve`: the client, the wire format and the
    # threads are all real; only the model behind the endpoint is canned.
    _ChatServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "openai"
    try:
        cfg = compose_config("demo_math", [
            f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "dataset.eval_fraction=0.25",
            "generation.backend=openai", f"generation.base_url=http://127.0.0.1:{server.server_port}/v1",
            "generation.num_samples_per_problem=4", "generation.concurrency=3", "generation.problems_per_batch=4",
            "model.model_name_or_path=served-model", f"output_dir={out}", "progress=false"])
        generate_preference_data(cfg)
    finally:
        server.shutdown()
    requests = _ChatServer.requests
    assert len(requests) == 4
    assert all(r["n"] == 4 and r["temperature"] == 0.9 and r["top_k"] == 10000 and r["model"] == "served-model"
               for r in requests)
    problems = {f"What is {a} plus {b}?" for a, b in [(1, 2), (3, 4), (10, 5), (7, 7)]}
    expected_seeds = {problem_seed(42, stable_hash("problem", p)) for p in problems}
    assert {r["seed"] for r in requests} == expected_seeds
    candidates = load_from_disk(str(out / "candidates")).to_list()
    assert len(candidates) == 16
    assert [c["correct"] for c in candidates[:4]] == [True, False, True, False]
    pairs = load_from_disk(str(out))
    assert len(pairs["train"]) + len(pairs["eval"]) == 4 * 4  # 2 right × 2 wrong per problem, cap 4


def test_openai_backend_reports_an_unreachable_server(tmp_path, addition_problems):
    cfg = compose_config("demo_math", [
        f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "generation.backend=openai",
        "generation.base_url=http://127.0.0.1:9/v1", "generation.max_retries=0",
        f"output_dir={tmp_path / 'out'}", "progress=false"])
    with pytest.raises(UserError, match=r"cannot reach an OpenAI-compatible server at http://127\.0\.0\.1:9/v1"):
        generate_preference_data(cfg)
    assert not (tmp_path / "out" / "dataset_dict.json").exists()


def test_vllm_backend_through_a_fake_engine(tmp_path, monkeypatch, addition_problems):
    # vLLM needs a GPU; this fakes only its client boundary (vllm.LLM and vllm.SamplingParams) and checks
    # what the stage asks of it: tensor parallelism, chat messages, and one seeded SamplingParams per problem.
    calls = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def chat(self, conversations, sampling_params, use_tqdm):
            calls.setdefault("chat", []).append((conversations, sampling_params))
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f"seed {p.seed}: $\\boxed{{{i}}}$")
                                             for i in range(p.n)]) for p in sampling_params]

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=FakeLLM, SamplingParams=SimpleNamespace))
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    out = tmp_path / "vllm"
    cfg = compose_config("demo_math", [
        f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "generation.backend=vllm",
        f"model.model_name_or_path={model_dir}", "generation.num_samples_per_problem=3",
        "generation.problems_per_batch=2", f"output_dir={out}", "progress=false"])
    generate_preference_data(cfg)
    assert calls["init"]["model"] == str(model_dir) and calls["init"]["tensor_parallel_size"] >= 1
    assert len(calls["chat"]) == 2
    conversations, params = calls["chat"][0]
    assert conversations[0][-1]["role"] == "user" and "What is" in conversations[0][-1]["content"]
    assert "\\boxed{}" in conversations[0][-1]["content"]
    assert all(p.n == 3 and p.temperature == 0.9 and p.top_k == 10000 and p.max_tokens == 4096 for p in params)
    assert len({p.seed for _, ps in calls["chat"] for p in ps}) == 4
    assert len(load_from_disk(str(out / "candidates"))) == 12


def test_transformers_backend_is_seeded_per_problem_not_per_batch(tmp_path, tiny_models, addition_problems):
    runs = {}
    for batch in (1, 4):
        out = tmp_path / f"batch{batch}"
        cfg = compose_config("demo_math", [
            f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "generation.backend=transformers",
            f"model.model_name_or_path={tiny_models['lm']}", "generation.num_samples_per_problem=3",
            "generation.max_new_tokens=6", f"generation.problems_per_batch={batch}", f"output_dir={out}",
            "progress=false"])
        generate_preference_data(cfg)
        runs[batch] = load_from_disk(str(out / "candidates")).to_list()
    assert runs[1] == runs[4]
    assert len(runs[1]) == 12
    first_problem = [c["response"] for c in runs[1] if c["problem_id"] == runs[1][0]["problem_id"]]
    assert len(set(first_problem)) > 1, "samples of one problem differ (sampling, not greedy)"


def test_resume_refuses_a_different_config_and_rerun_of_complete_output_is_untouched(tmp_path, capsys):
    out = tmp_path / "math"
    overrides = [f"output_dir={out}", "progress=false", "dataset.max_examples=6"]
    generate_preference_data(compose_config("demo_math", overrides))
    stamp = (out / "dataset_dict.json").stat().st_mtime_ns
    train_files = sorted(p.name for p in (out / "train").iterdir())

    generate_preference_data(compose_config("demo_math", [*overrides, "generation.problems_per_batch=1"]))
    assert "already complete" in capsys.readouterr().out
    assert (out / "dataset_dict.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (out / "train").iterdir()) == train_files

    with pytest.raises(UserError, match=r"other settings \(generation.temperature: 0.9 → 0.5\)"):
        generate_preference_data(compose_config("demo_math", [*overrides, "generation.temperature=0.5"]))
    with pytest.raises(UserError, match=r"other settings.*dataset\.max_examples: 6 → 7"):
        generate_preference_data(compose_config("demo_math", [*overrides[:-1], "dataset.max_examples=7"]))

    generate_preference_data(compose_config("demo_math", [*overrides, "overwrite=true", "seed=1"]))
    assert json.loads((out / "generation_manifest.json").read_text())["config"]["seed"] == 1


def test_unknown_key_in_a_composed_config_is_an_error(tmp_path):
    cfg = compose_config("demo_math", [f"output_dir={tmp_path}"])
    cfg_dict = {**dict(cfg), "generaton": {"backend": "replay"}}
    with pytest.raises(UserError, match="generaton"):
        generate_preference_data(cfg_dict)


def test_eval_split_sized_by_pairs_takes_the_fewest_problems_in_split_order(tmp_path):
    from reward_transfer.generation.problems import split_order
    from reward_transfer.generation.store import MANIFEST

    out = tmp_path / "math"
    generate_preference_data(compose_config("demo_math", [f"output_dir={out}", "progress=false",
                                                          "dataset.eval_pairs=20"]))
    pairs = load_from_disk(str(out))
    eval_pairs = Counter(pairs["eval"]["problem_id"])
    assert len(pairs["eval"]) >= 20
    candidates = load_from_disk(str(out / "candidates")).to_list()
    split_of = {c["problem_id"]: c["split"] for c in candidates}
    eval_problems = {pid for pid, split in split_of.items() if split == "eval"}
    assert set(eval_pairs) <= eval_problems and not eval_problems & set(pairs["train"]["problem_id"])
    # The eval problems are a prefix of the seeded order, and one problem fewer would hold too few pairs.
    order = split_order(list(split_of), 42)
    assert set(order[:len(eval_problems)]) == eval_problems
    last = order[len(eval_problems) - 1]
    assert len(pairs["eval"]) - eval_pairs[last] < 20
    summary = json.loads((out / MANIFEST).read_text())["summary"]
    assert summary["eval_pairs"] == len(pairs["eval"]) and summary["eval_problems"] == len(eval_problems)

    with pytest.raises(UserError, match=r"dataset\.eval_pairs=100000"):
        generate_preference_data(compose_config("demo_math", [f"output_dir={tmp_path / 'too_many'}", "progress=false",
                                                              "dataset.eval_pairs=100000"]))


def test_math_problems_keep_only_easy_to_compare_references(tmp_path):
    from reward_transfer.generation.problems import load_problems

    rows = [
        ("Compute $1 + 2$.", "So the sum is $\\boxed{3}$."),
        ("What is half of one?", "It is $\\boxed{\\frac{1}{2}}$."),
        ("Which option is right? (A) 1 (B) 2", "The answer is $\\boxed{B}$."),
        ("Prove that there are infinitely many primes.", "Suppose not ... $\\boxed{\\text{proved}}$"),
        ("Show that $n^2 \\geq n$ for all positive integers.", "Since $n \\geq 1$ ... $\\boxed{n^2 \\geq n}$"),
        ("Is f increasing?", "Hence $\\boxed{\\text{The function is increasing on } (0, \\infty)}$."),
        ("Simplify $\\sqrt{32}$.", "We get $\\boxed{4\\sqrt(2)}$."),
        ("Find x.", "No box here, the answer is 5."),
    ]
    data = write_jsonl(tmp_path / "numina.jsonl", [{"problem": p, "solution": s} for p, s in rows])
    cfg = to_settings(compose_config("demo_math", [f"dataset.datasets=[{{name_or_path:{data},split:train}}]",
                                                   "dataset.eval_fraction=0.0", f"output_dir={tmp_path / 'out'}"]))
    problems, skipped = load_problems(cfg)
    assert sorted(p.reference for p in problems) == ["3", "B", "\\frac{1}{2}"]
    assert dict(skipped) == {"proof problem": 2, "free-text answer": 1, "malformed LaTeX answer": 1,
                             "reference has no \\boxed{} answer": 1}


def test_a_generation_without_a_single_pair_says_so_loudly(tmp_path, addition_problems, capsys):
    replay = write_jsonl(tmp_path / "replay.jsonl", [
        {"problem": f"What is {a} plus {b}?", "responses": ["$\\boxed{-1}$", "$\\boxed{-2}$"]}
        for a, b in [(1, 2), (3, 4), (10, 5), (7, 7)]])
    out = tmp_path / "out"
    generate_preference_data(compose_config("demo_math", [
        f"dataset.datasets=[{{name_or_path: {addition_problems}}}]", "dataset.eval_fraction=0.5",
        f"generation.replay_path={replay}", "generation.num_samples_per_problem=2", "progress=false",
        f"output_dir={out}"]))
    printed = capsys.readouterr().out
    assert "WARNING     no candidate is correct (0 of 8)" in printed
    assert "WARNING     the train split has 0 pairs" in printed
    warnings = json.loads((out / "generation_manifest.json").read_text())["summary"]["warnings"]
    assert len(warnings) == 3


def test_a_bad_max_examples_names_the_key(tmp_path):
    with pytest.raises(UserError, match=r"dataset\.max_examples: must be positive or null, got -5"):
        generate_preference_data(compose_config("demo_math", ["dataset.max_examples=-5",
                                                              f"output_dir={tmp_path / 'out'}"]))


def test_sampling_goes_on_while_the_previous_batch_is_labelled(tmp_path, monkeypatch):
    """The GPU never waits for the verifiers: labelling batch 1 can only finish once batch 2 is being sampled (it
    waits for that, with a timeout that a one-thing-at-a-time pipeline would hit), and the output is unchanged."""
    from reward_transfer.generation import pipeline

    second_batch_sampling = threading.Event()
    overlapped = []
    calls = {"generate": 0}
    real_label, real_generate = pipeline.label_candidates, pipeline.ReplayBackend.generate

    def generate(self, problems, n):
        calls["generate"] += 1
        if calls["generate"] == 2:
            second_batch_sampling.set()
        return real_generate(self, problems, n)

    def label(*args, **kwargs):
        if not overlapped:
            overlapped.append(second_batch_sampling.wait(timeout=20))
        return real_label(*args, **kwargs)

    monkeypatch.setattr(pipeline.ReplayBackend, "generate", generate)
    monkeypatch.setattr(pipeline, "label_candidates", label)
    overlapping = tmp_path / "overlapping"
    generate_preference_data(compose_config("demo_math", [f"output_dir={overlapping}", "progress=false",
                                                          "generation.problems_per_batch=8"]))
    assert overlapped == [True] and calls["generate"] > 2
    monkeypatch.undo()
    whole = tmp_path / "one_batch"
    generate_preference_data(compose_config("demo_math", [f"output_dir={whole}", "progress=false",
                                                          "generation.problems_per_batch=1000"]))
    for split in ("train", "eval"):
        assert load_from_disk(str(overlapping))[split]["pair_id"] == load_from_disk(str(whole))[split]["pair_id"]
