"""The SFT stage on the tiny LM: the held-out loss falls, no SFT problem is in the pair data, the result is the base
of a ground-truth RM that trains, evaluates and is reported; bad input is one line; a killed run resumes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, free_port
from datasets import load_from_disk
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from safetensors.torch import load_file
from training_helpers import OFFLINE_ENV, interrupt_at_step

from reward_transfer.errors import UserError
from reward_transfer.generation import generate_preference_data
from reward_transfer.grid.reproduce import reproduce
from reward_transfer.sft import train_sft_model
from reward_transfer.training_runs import checkpoint_dir

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def compose_config(script: str, name: str, overrides: list[str]):
    import reward_transfer.sft_schema  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / script), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def math_pairs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs") / "pref-data-math"
    generate_preference_data(compose_config("generate_preference_data", "demo_math",
                                            [f"output_dir={out}", "progress=false"]))
    return out


def sft_overrides(tiny_models, pairs: Path, out: Path, *extra: str) -> list[str]:
    # The demo pairs' own problems are offered too: the exclusion, not the file choice, keeps them out.
    return [f"model.model_name_or_path={tiny_models['lm']}", f"output_dir={out}", f"dataset.exclude=[{pairs}]",
            "dataset.datasets=[{name_or_path:data/sft_math_problems.jsonl,split:train},"
            "{name_or_path:data/math_problems.jsonl,split:train}]", *extra]


def test_sft_lowers_the_held_out_loss_and_never_sees_a_pair_problem(tiny_models, math_pairs, tmp_path):
    out = tmp_path / "sft_math"
    summary = train_sft_model(compose_config("train_sft_model", "demo_math", sft_overrides(tiny_models, math_pairs, out)))
    assert summary["held_out_loss_after"] < summary["held_out_loss_before"]
    record = json.loads((out / "sft_problems.json").read_text())
    pairs = load_from_disk(str(math_pairs))
    pair_problems = set(pairs["train"]["problem_id"]) | set(pairs["eval"]["problem_id"])
    used = set(record["train"]) | set(record["held_out"])
    assert used and not used & pair_problems
    assert record["skipped"]["in the reward-model data (dataset.exclude)"] >= len(pair_problems)
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "log_history.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()  # a standalone causal LM, LoRA merged


@pytest.mark.parametrize(("case", "message"), [
    ("no_solution_column", "missing column(s) answer_text"),
    ("empty_solutions", "0 problems with a reference solution left for SFT"),
    ("reward_model_base", "is not a causal LM to fine-tune"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, message, tiny_models, math_pairs, tmp_path):
    out = tmp_path / "out"
    extra = []
    if case == "no_solution_column":
        extra = ["+dataset.columns.solution=answer_text"]
    elif case == "empty_solutions":
        data = tmp_path / "empty.jsonl"
        data.write_text("".join(json.dumps({"problem": f"What is {n} + 1?", "solution": " "}) + "\n" for n in range(5)))
        extra = [f"dataset.datasets=[{{name_or_path:{data},split:train}}]"]
    overrides = sft_overrides(tiny_models, math_pairs, out, *extra)
    if case == "reward_model_base":
        overrides[0] = f"model.model_name_or_path={tiny_models['rm']}"
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        train_sft_model(compose_config("train_sft_model", "demo_math", overrides))
    assert "\n" not in str(err.value)
    assert not out.exists() and not checkpoint_dir(out).exists()


def test_a_killed_sft_run_resumes_from_its_last_complete_checkpoint(tiny_models, math_pairs, tmp_path, monkeypatch,
                                                                     capsys):
    from trl import SFTTrainer

    out = tmp_path / "resumed"
    overrides = sft_overrides(tiny_models, math_pairs, out, "train.save_steps=2", "train.max_steps=6")
    interrupt_at_step(monkeypatch, SFTTrainer, 5,
                      lambda: train_sft_model(compose_config("train_sft_model", "demo_math", overrides)))
    assert not out.exists() and (checkpoint_dir(out) / "checkpoint-4").is_dir()
    capsys.readouterr()
    summary = train_sft_model(compose_config("train_sft_model", "demo_math", [*overrides, "train.resume=true"]))
    assert "resuming from step 4" in capsys.readouterr().out and summary["steps"] == 6
    # The loss before training was measured at step 0 and travelled with the checkpoints.
    assert summary["held_out_loss_before"] is not None
    assert summary["held_out_loss_after"] < summary["held_out_loss_before"]


def test_the_ground_truth_rm_of_an_sft_model_trains_evaluates_and_is_reported(tiny_models, tmp_path):
    run = tmp_path / "run"
    cfg = compose_config("reproduce", "config", [
        f"output_dir={run}", "profile.domains=[math]", f"profile.tiny_models={tiny_models['lm'].parent}",
        f"profile.models.general={tiny_models['rm']}", f"profile.sft.base.math={tiny_models['lm']}",
        "only=[setup,generate,sft,truth,eval/math_scratch,report]"])
    statuses = {r.step: r.status for r in reproduce(cfg)}
    assert statuses["sft/math"] == "done" and statuses["eval/math_scratch"] == "done"
    assert json.loads((run / "models/math_scratch/reward_model.json").read_text())["base_model"] == str(
        run / "models" / "sft_math")
    md = (run / "tables.md").read_text()
    assert f"math: trained here from {tiny_models['lm']}" in md
    assert json.loads((run / "eval/math_scratch/results.json").read_text())["num_pairs"] > 0


def test_sft_of_the_internlm2_stand_in_keeps_its_remote_code_and_tokenizer(tmp_path, math_pairs):
    """The paper's base is InternLM2 remote code written for transformers 4 (no GenerationMixin, so no
    generation_config under transformers 5, which PEFT's causal-LM wrapper reads; a SentencePiece tokenizer)."""
    from reward_transfer.models import load_reward_model
    from reward_transfer.tiny_internlm2 import build_tiny_internlm2

    base = build_tiny_internlm2(tmp_path / "internlm2-lm", kind="causal_lm", rope_scaling={"type": "dynamic",
                                                                                          "factor": 2.0})
    out = tmp_path / "sft"
    summary = train_sft_model(compose_config("train_sft_model", "demo_math", [
        f"model.model_name_or_path={base}", f"output_dir={out}", f"dataset.exclude=[{math_pairs}]",
        "train.max_steps=4"]))
    assert summary["held_out_loss_after"] < summary["held_out_loss_before"]
    assert (out / "tokenizer.model").exists() and (out / "modeling_internlm2.py").exists()
    assert json.loads((out / "config.json").read_text())["rope_scaling"] == {"type": "dynamic", "factor": 2.0}
    model, _ = load_reward_model(str(out), init="causal_lm_new_head")
    assert type(model).__name__ == "InternLM2ForSequenceClassification"


def test_sft_under_deepspeed_zero3_on_two_processes_writes_the_whole_merged_model(tiny_models, math_pairs, tmp_path):
    """ZeRO-3 partitions every weight over the processes: the merged model is built from what `save_model` gathers,
    in the base's own dtype (untouched weights stay bit-identical to the base), and the held-out loss before
    training comes from the training engine (evaluating before `train()` is refused under DeepSpeed)."""
    out = tmp_path / "zero3"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file=deepspeed/3_2GPU.yaml",
               "--num_processes", "2", "--main_process_port", str(free_port()), "train_sft_model.py",
               "--config-name=demo_math", *sft_overrides(tiny_models, math_pairs, out, "train.max_steps=2",
                                                          "model.dtype=bfloat16")]
    result = subprocess.run(command, cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["deepspeed"] == {"zero_stage": 3, "model_dtype": "torch.bfloat16",
                                    "grad_accum_dtype": "torch.float32"}
    assert summary["held_out_loss_before"] is not None and summary["held_out_loss_after"] is not None
    trained, base = load_file(str(out / "model.safetensors")), load_file(str(tiny_models["lm"] / "model.safetensors"))
    assert trained.keys() == base.keys()
    for name, weight in base.items():
        assert trained[name].shape == weight.shape and trained[name].dtype == weight.dtype, name
    untouched = [n for n in base if "norm" in n or "embed" in n or "lm_head" in n]
    assert untouched and all(torch.equal(trained[n], base[n]) for n in untouched)
    adapted = [n for n in base if n.endswith("proj.weight")]
    assert adapted and all(not torch.equal(trained[n], base[n]) for n in adapted)


def test_sft_of_code_finds_problems_only_when_generation_reserved_a_share(tiny_models, tmp_path):
    """The paper's code data (APPS) is used whole by generation: SFT of the same problems then had none left and the
    grid's `sft/code` step failed. A seeded share reserved at generation time (recorded with the pairs) is what SFT
    trains on; the reward-model share, every problem generation could pair, stays out of SFT."""
    from reward_transfer.generation.problems import in_sft_share

    problems = "data/code_problems.jsonl"

    def generate(out: Path, *extra: str) -> Path:
        generate_preference_data(compose_config("generate_preference_data", "demo_code",
                                                [f"output_dir={out}", "progress=false", "dataset.eval_fraction=0.2",
                                                 *extra]))
        return out

    def sft(pairs: Path, out: Path) -> dict:
        return train_sft_model(compose_config("train_sft_model", "demo_code", [
            f"model.model_name_or_path={tiny_models['lm']}", f"output_dir={out}", f"dataset.exclude=[{pairs}]",
            f"dataset.datasets=[{{name_or_path:{problems},split:train}}]", "train.max_steps=1", "model.max_length=2048"]))

    whole = generate(tmp_path / "all")
    with pytest.raises(UserError, match=r"problems with a reference solution left for SFT.*dataset\.sft_share"):
        sft(whole, tmp_path / "sft_all")
    published = tmp_path / "published"  # pair data given whole (paper_published), not generated here: no partition
    shutil.copytree(whole, published)
    (published / "problem_partition.json").unlink()
    with pytest.raises(UserError, match=r"left for SFT.*was not generated here.*profile\.sft\.train=false"):
        sft(published, tmp_path / "sft_published")

    shared = generate(tmp_path / "shared", "dataset.sft_share=0.3")
    partition = json.loads((shared / "problem_partition.json").read_text())
    assert partition["sft_share"] == 0.3 and partition["sft_share_problems"] >= 2
    pairs = load_from_disk(str(shared))
    paired = set(pairs["train"]["problem_id"]) | set(pairs["eval"]["problem_id"])
    assert paired <= set(partition["rm_problem_ids"])
    assert not any(in_sft_share(pid, 42, 0.3) for pid in partition["rm_problem_ids"])
    sft(shared, tmp_path / "sft_shared")
    record = json.loads((tmp_path / "sft_shared" / "sft_problems.json").read_text())
    used = set(record["train"]) | set(record["held_out"])
    assert used and not used & set(partition["rm_problem_ids"])
    assert all(in_sft_share(pid, 42, 0.3) for pid in used)
