"""The memory plan: the fastest micro-batch and checkpointing that fit, the effective batch never changed."""

import itertools
import json

import pytest
from training_helpers import compose_config, tiny_run, write_pairs

from reward_transfer.memory_plan import GIB, ModelShape, lora_parameters, peak_bytes, plan_memory
from reward_transfer.models import load_reward_model, reward_head_name, unwrap_model

# InternLM2-7B's shape (config.json of internlm/internlm2-7b-reward), LoRA r32 on every linear layer.
INTERNLM2_7B = ModelShape(parameters=7_737_708_544, trainable_parameters=75_000_000, hidden_size=4096,
                          intermediate_size=14336, layers=32, heads=32, eager_attention=True)


@pytest.mark.parametrize("device_gib", [24, 40, 80, 141])
def test_the_effective_batch_is_kept_and_the_plan_fits(device_gib):
    plan = plan_memory(INTERNLM2_7B, device_gib * GIB, pairs_per_process=32, max_length=1024)
    assert plan.micro_batch * plan.gradient_accumulation_steps == 32
    assert peak_bytes(INTERNLM2_7B, plan.micro_batch, 1024, plan.gradient_checkpointing) <= 0.85 * device_gib * GIB


def test_more_memory_never_gives_a_slower_plan():
    plans = [plan_memory(INTERNLM2_7B, gib * GIB, 32, 1024) for gib in range(24, 200, 4)]
    assert all(plans)
    speed = [(not p.gradient_checkpointing, p.micro_batch) for p in plans]
    # Checkpointing off is worth more than any micro-batch; within a checkpointing setting, bigger is faster.
    assert [s[0] for s in speed] == sorted(s[0] for s in speed)
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(speed) if a[0] == b[0])


def test_an_h200_trains_the_paper_model_without_checkpointing_and_a_24gb_gpu_needs_it():
    assert not plan_memory(INTERNLM2_7B, 141 * GIB, 32, 1024).gradient_checkpointing
    assert plan_memory(INTERNLM2_7B, 24 * GIB, 32, 1024).gradient_checkpointing
    assert plan_memory(INTERNLM2_7B, 12 * GIB, 32, 1024) is None  # the weights alone take 14.4 GiB


def test_eager_attention_costs_memory_with_the_sequence_length():
    sdpa = ModelShape(**{**INTERNLM2_7B.__dict__, "eager_attention": False})
    assert peak_bytes(INTERNLM2_7B, 2, 4096, False) - peak_bytes(sdpa, 2, 4096, False) > 4 * (
        peak_bytes(INTERNLM2_7B, 2, 1024, False) - peak_bytes(sdpa, 2, 1024, False)) * 0.99


def test_lora_parameters_match_peft(tiny_models):
    from peft import LoraConfig, get_peft_model

    model, _ = load_reward_model(str(tiny_models["rm"]), device="cpu", dtype="float32")
    head = reward_head_name(model)
    expected = lora_parameters(unwrap_model(model), 8, head)
    wrapped = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", exclude_modules=[head]))
    assert expected == sum(p.numel() for n, p in wrapped.named_parameters() if "lora_" in n)


def test_a_cpu_run_keeps_the_configured_sizes(tiny_models, tmp_path):
    from reward_transfer.training import train_reward_model

    out = tmp_path / "run"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], write_pairs(tmp_path / "pairs", 8), out,
                                               "train.max_steps=1", "train.fit_to_memory=true"))
    summary = train_reward_model(cfg)
    assert summary["memory_plan"] is None
    assert json.loads((out / "training_summary.json").read_text())["memory_plan"] is None


def test_steps_sharing_a_gpu_are_told_their_share_and_plan_for_it(monkeypatch):
    """executor.steps_per_gpu=2: each GPU step's launch carries its share, and the plan for half an H200 fits in
    half (two trainings side by side planned for the whole GPU would run out of memory)."""
    from reward_transfer.errors import UserError
    from reward_transfer.grid.executors import get_executor
    from reward_transfer.grid.profile import ExecutorConfig, ProfileConfig
    from reward_transfer.grid.step import Step
    from reward_transfer.memory_plan import GPU_SHARE_ENV, gpu_share

    profile = ProfileConfig(name="t", domains=["math"])
    local = get_executor(ExecutorConfig(name="local", gpus=[0], steps_per_gpu=2), profile)
    ray = get_executor(ExecutorConfig(name="ray", gpus=[0], steps_per_gpu=2), profile)
    train = Step("train/math_scratch", "truth", "train_reward_model", "math_scratch", [])
    report = Step("report", "report", "report", None, [])
    assert local.gpu_share_env() == {GPU_SHARE_ENV: "0.5"}
    assert ray._launch(train).env[GPU_SHARE_ENV] == "0.5" and GPU_SHARE_ENV not in ray._launch(report).env
    assert get_executor(ExecutorConfig(name="local", gpus=[0]), profile).gpu_share_env() == {}

    monkeypatch.setenv(GPU_SHARE_ENV, "0.5")
    half = plan_memory(INTERNLM2_7B, int(141 * GIB * gpu_share()), 32, 1024)
    assert peak_bytes(INTERNLM2_7B, half.micro_batch, 1024, half.gradient_checkpointing) <= 0.85 * 70.5 * GIB
    monkeypatch.setenv(GPU_SHARE_ENV, "2")
    with pytest.raises(UserError, match=f"{GPU_SHARE_ENV}=2: must be a share of the GPU"):
        gpu_share()
