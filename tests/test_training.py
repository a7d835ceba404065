"""Reward-model training: configs, learning, outputs, the head, resume, long pairs, bad input, launchers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port
from datasets import Dataset
from hydra.errors import ConfigCompositionException
from safetensors.torch import load_file
from training_helpers import (
    CONFIG_DIR,
    OFFLINE_ENV,
    REPO_ROOT,
    compose_config,
    interrupt_at_step,
    pair_accuracy,
    score,
    synthetic_pairs,
    tiny_run,
    write_pairs,
)

from reward_transfer.errors import UserError
from reward_transfer.models import load_reward_model
from reward_transfer.training import train_reward_model
from reward_transfer.training_data import encode_pairs, load_pair_rows
from reward_transfer.training_runs import checkpoint_dir

NAMED_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
pytestmark = pytest.mark.usefixtures("single_cpu_thread")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pref-data-math", train=48, eval_=48)


@pytest.fixture(scope="module")
def trained_rm(tiny_models, pairs_dir, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny RM trained one epoch on the synthetic pairs (max_examples above the data size: all are used)."""
    out = tmp_path_factory.mktemp("runs") / "demo_math"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], pairs_dir, out, "dataset.max_examples=1000"))
    return out, train_reward_model(cfg)


# --- configs -------------------------------------------------------------------------------------------------


def test_every_named_config_composes_with_the_paper_hyperparameters():
    """The recipes by role (a domain given) and the original code's names (a line or two over them)."""
    roles = {"truth", "finetune", "cross", "active_learning", "active_learning_initial"}
    expected = roles | {"base", "demo", "math_scratch", "code_scratch", "active_learning_math", "active_learning_code",
                        "active_learning_math_initial", "active_learning_code_initial", "demo_math", "demo_code"}
    assert set(NAMED_CONFIGS) == expected
    for name in NAMED_CONFIGS:
        given = ["domain=code", "source=math", "name=run"] if name in {*roles, "base", "demo"} else []
        cfg = compose_config(name, given)
        run = "run" if given else name.removesuffix("_initial")  # every AL round writes the same model folder
        assert cfg.name == run and cfg.output_dir.endswith(run), name
        assert (cfg.model.lora.rank, cfg.model.lora.alpha, cfg.model.lora.dropout) == (32, 64, 0.01)
        assert cfg.model.lora.target_modules == "all-linear" and cfg.model.lora.bias == "none"
        assert cfg.train.optim == "adamw_torch" and cfg.train.per_device_train_batch_size == 2
        assert cfg.model.dtype is None and cfg.train.gradient_checkpointing in (True, False)
        if name.startswith("demo"):
            continue
        assert cfg.train.gradient_accumulation_steps == 16 and cfg.train.learning_rate == 5e-5
        assert cfg.model.max_length == 1024 and cfg.train.epochs == 1
        assert cfg.train.lr_scheduler_type == ("constant" if name.startswith("active_learning") else "cosine")
        assert cfg.model.init == ("causal_lm_new_head" if name.endswith("scratch") or name == "truth"
                                  else "reward_model")
    assert compose_config("math_scratch").dataset.datasets[0].name_or_path == "outputs/data/pref-data-math"
    assert compose_config("cross", ["source=math", "domain=code"]).model.model_name_or_path == \
        "outputs/models/math_scratch-merged"
    assert compose_config("active_learning_code").model.model_name_or_path.endswith("active_learning_code-merged")


def test_reproduce_style_overrides_compose_and_unknown_keys_are_refused():
    cfg = compose_config("math_scratch", ["profile=tiny", "model.model_name_or_path=.tiny_models/lm",
                                          "dataset.datasets=[{name_or_path:run/data/pref-data-math,split:train}]",
                                          "dataset.max_examples=64", "output_dir=run/models/math_truth"])
    assert cfg.dataset.datasets[0].name_or_path == "run/data/pref-data-math" and cfg.train.learning_rate == 1e-3
    assert cfg.model.init == "causal_lm_new_head" and cfg.output_dir == "run/models/math_truth"
    with pytest.raises(ConfigCompositionException):
        compose_config("math_scratch", ["train.lerning_rate=1e-4"])


def test_accelerate_configs_are_valid():
    """accelerate's own reading of each launch config and of the DeepSpeed file it names."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    for name, stage, gpus in (("1_1GPU", 1, 1), ("2_2GPU", 2, 2), ("3_2GPU", 3, 2), ("3_4GPU", 3, 4)):
        config = load_config_from_file(str(REPO_ROOT / "deepspeed" / f"{name}.yaml"))
        assert config.distributed_type == "DEEPSPEED" and config.num_processes == gpus
        assert config.mixed_precision is None  # the Trainer sets it from the hardware (a file config refuses both)
        plugin = DeepSpeedPlugin(hf_ds_config=str(REPO_ROOT / config.deepspeed_config["deepspeed_config_file"]),
                                 zero3_init_flag=config.deepspeed_config["zero3_init_flag"])
        assert plugin.zero_stage == stage and plugin.zero3_init_flag == (stage == 3)
        # Batch/accumulation left "auto": the Trainer fills them from the Hydra config, so they never disagree.
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"


# --- training ------------------------------------------------------------------------------------------------


def test_training_learns_the_signal_and_writes_a_complete_run(trained_rm, pairs_dir):
    out, summary = trained_rm
    assert summary["pairs"]["loaded"] == 48 and summary["pairs"]["kept"] == 48  # all rows, not 1000
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "log_history.json",
                 "train_config.yaml", "README.md", "reward_model.json"):
        assert (out / name).exists(), name
    history = json.loads((out / "log_history.json").read_text())
    assert {"loss", "accuracy", "margin", "learning_rate", "step"} <= set(history[0])
    assert not checkpoint_dir(out).exists()

    held_out = synthetic_pairs(96)[48:]  # the eval split: never trained on
    model, tokenizer = load_reward_model(str(out), device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert pair_accuracy(model, tokenizer, held_out) >= 0.85


def test_a_finished_run_is_kept_on_rerun_and_other_settings_are_refused(trained_rm, tiny_models, pairs_dir, capsys):
    out, summary = trained_rm
    before = (out / "adapter_model.safetensors").read_bytes()
    run = tiny_run(tiny_models["rm"], pairs_dir, out, "dataset.max_examples=1000")
    same = compose_config("demo_math", [*run, "train.save_steps=7"])
    assert train_reward_model(same) == summary  # a how-often key (save_steps) is not a different run
    assert "already complete" in capsys.readouterr().out
    other = compose_config("demo_math", [*run, "train.learning_rate=0.1"])
    with pytest.raises(UserError, match=r"other settings \(train\.learning_rate: 0\.001 → 0\.1\)") as err:
        train_reward_model(other)
    assert "\n" not in str(err.value) and "overwrite=true" in str(err.value)
    assert (out / "adapter_model.safetensors").read_bytes() == before


def test_new_head_of_a_causal_lm_is_trained_saved_and_restored(tiny_models, pairs_dir, tmp_path):
    out = tmp_path / "math_scratch"
    cfg = compose_config("math_scratch", ["profile=tiny", *tiny_run(tiny_models["lm"], pairs_dir, out,
                                                                       "train.max_steps=4")])
    train_reward_model(cfg)
    saved = load_file(str(out / "adapter_model.safetensors"))
    head_keys = [k for k in saved if ".score." in k]
    assert head_keys, "the new head must be in the adapter"

    torch.manual_seed(123)
    first, tokenizer = load_reward_model(str(out))
    torch.manual_seed(456)  # a head silently re-drawn at load would change the scores
    second, _ = load_reward_model(str(out))
    rows = synthetic_pairs(4)
    problems, answers = [r["problem"] for r in rows], [r["accepted"] for r in rows]
    assert torch.equal(score(first, tokenizer, problems, answers), score(second, tokenizer, problems, answers))
    trained_head = saved[head_keys[0]]
    torch.manual_seed(cfg.seed)
    fresh, _ = load_reward_model(str(tiny_models["lm"]), init="causal_lm_new_head")
    assert not torch.allclose(trained_head, fresh.score.weight), "the head must have been trained"


def test_frozen_head_switch_reproduces_the_original_untrained_head(tiny_models, pairs_dir, tmp_path):
    out = tmp_path / "frozen"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], pairs_dir, out, "train.max_steps=3",
                                               "model.freeze_head=true"))
    train_reward_model(cfg)
    saved = load_file(str(out / "adapter_model.safetensors"))
    base_head = load_file(str(tiny_models["rm"] / "model.safetensors"))["score.weight"]
    head = next(v for k, v in saved.items() if ".score." in k)
    assert torch.equal(head, base_head)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k), "LoRA weights must still train"
    assert json.loads((out / "reward_model.json").read_text())["head_trained"] is False


def test_interrupted_training_resumes_from_its_last_checkpoint(tiny_models, pairs_dir, tmp_path, monkeypatch):
    from trl import RewardTrainer

    out = tmp_path / "resumed"
    overrides = tiny_run(tiny_models["rm"], pairs_dir, out, "train.max_steps=6", "train.save_steps=2")
    interrupt_at_step(monkeypatch, RewardTrainer, 5, lambda: train_reward_model(compose_config("demo_math", overrides)))
    assert not out.exists(), "an interrupted run leaves no result in output_dir"
    assert (checkpoint_dir(out) / "checkpoint-4").is_dir()
    with pytest.raises(UserError, match=r"train\.resume=true"):
        train_reward_model(compose_config("demo_math", overrides))

    summary = train_reward_model(compose_config("demo_math", [*overrides, "train.resume=true"]))
    steps = [e["step"] for e in json.loads((out / "log_history.json").read_text()) if "loss" in e]
    assert summary["steps"] == 6 and steps[-2:] == [5, 6]
    assert (out / "adapter_model.safetensors").exists() and not checkpoint_dir(out).exists()


def test_an_interrupt_while_a_checkpoint_is_written_resumes_from_the_last_complete_one(
        tiny_models, pairs_dir, tmp_path, monkeypatch, capsys):
    from transformers.trainer_callback import TrainerState

    out = tmp_path / "cut"
    overrides = tiny_run(tiny_models["rm"], pairs_dir, out, "train.max_steps=6", "train.save_steps=2")
    original_save, calls = TrainerState.save_to_json, []

    def interrupted_second_save(self, path):
        calls.append(path)
        if len(calls) == 2:  # checkpoint-4: weights, optimizer and RNG state written, trainer_state.json not yet
            raise KeyboardInterrupt("simulated kill during the checkpoint save")
        return original_save(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", interrupted_second_save)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(compose_config("demo_math", overrides))
    monkeypatch.setattr(TrainerState, "save_to_json", original_save)
    partial = checkpoint_dir(out) / "checkpoint-4"
    assert partial.is_dir() and not (partial / "trainer_state.json").exists()

    capsys.readouterr()
    summary = train_reward_model(compose_config("demo_math", [*overrides, "train.resume=true"]))
    assert "resuming from step 2" in capsys.readouterr().out
    steps = [e["step"] for e in json.loads((out / "log_history.json").read_text()) if "loss" in e]
    assert summary["steps"] == 6 and steps[-4:] == [3, 4, 5, 6]


def test_an_interrupted_run_resumes_only_with_its_own_settings(tiny_models, pairs_dir, tmp_path, monkeypatch):
    from trl import RewardTrainer

    out = tmp_path / "other"
    overrides = tiny_run(tiny_models["rm"], pairs_dir, out, "train.max_steps=4", "train.save_steps=2")
    interrupt_at_step(monkeypatch, RewardTrainer, 3, lambda: train_reward_model(compose_config("demo_math", overrides)))
    with pytest.raises(UserError, match=r"other settings \(seed: 42 → 7\)"):
        train_reward_model(compose_config("demo_math", [*overrides, "train.resume=true", "seed=7"]))
    assert (checkpoint_dir(out) / "checkpoint-2").is_dir()


def test_a_failed_push_keeps_the_model_and_push_only_retries_it(trained_rm, tiny_models, pairs_dir, monkeypatch):
    import huggingface_hub

    out, summary = trained_rm
    overrides = [*tiny_run(tiny_models["rm"], pairs_dir, out, "dataset.max_examples=1000"), "huggingface.push_to_hub=true"]
    with pytest.raises(UserError, match="push_only=true") as err:  # offline: the Hub client refuses
        train_reward_model(compose_config("demo_math", [*overrides, "huggingface.push_only=true"]))
    assert "\n" not in str(err.value) and "local result is complete" in str(err.value)
    pushed = []

    class RecordingApi:  # the Hub is the true external boundary: record what would be uploaded
        def create_repo(self, repo_id, private, exist_ok):
            pushed.append(("create", repo_id, private))

        def upload_folder(self, repo_id, folder_path, commit_message):
            pushed.append(("upload", repo_id, folder_path))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    assert train_reward_model(compose_config("demo_math", [*overrides, "huggingface.push_only=true"])) == summary
    assert pushed == [("create", "demo_math", True), ("upload", "demo_math", str(out))]


# --- data and the scoring protocol ---------------------------------------------------------------------------


def test_smaller_samples_are_prefixes_of_larger_ones(pairs_dir, tmp_path):
    def sample(n: int) -> list[str]:
        cfg = compose_config("finetune", ["domain=math", "name=run", *tiny_run("unused", pairs_dir, tmp_path / "out", f"dataset.max_examples={n}")])
        return [row["problem"] + row["accepted"] for row in load_pair_rows(cfg)]

    small, large = sample(16), sample(32)
    assert small == large[:16] and len(set(large)) == 32


def test_long_pairs_are_truncated_keeping_the_prompt_or_dropped_and_counted(tiny_models):
    _, tokenizer = load_reward_model(str(tiny_models["rm"]))
    rows = synthetic_pairs(6)
    rows[0]["accepted"] = "The final answer is 4. " * 200
    rows[1]["problem"] = "What is the sum? " * 200  # even the prompt is too long
    data = Dataset.from_list(rows)
    kept, stats = encode_pairs(data, tokenizer, 96, "truncate", None)  # the normal pairs are under 80 tokens
    assert (stats.loaded, stats.kept, stats.truncated, stats.dropped_too_long) == (6, 5, 1, 1)
    longest = max(kept["chosen_ids"], key=len)
    assert len(longest) <= 96 and longest[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(longest).count("What is") == 1  # the prompt survived
    _, stats = encode_pairs(data, tokenizer, 96, "drop", None)
    assert (stats.kept, stats.truncated, stats.dropped_too_long) == (4, 0, 2)


def test_the_scored_token_is_the_last_real_one(tiny_models):
    model, tokenizer = load_reward_model(str(tiny_models["rm"]))
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    rows = synthetic_pairs(3)
    problems, answers = [r["problem"] for r in rows], [r["accepted"] for r in rows]
    together = score(model, tokenizer, problems, answers)  # right-padded batch
    alone = torch.cat([score(model, tokenizer, [p], [a]) for p, a in zip(problems, answers, strict=True)])
    assert torch.allclose(together, alone, atol=1e-5)

    from reward_transfer.models import _distinct_pad_token

    tokenizer.pad_token = tokenizer.eos_token  # a tokenizer shipped with pad == eos
    _distinct_pad_token(tokenizer)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing_model", "causal_lm_without_init", "missing_columns", "short_data",
                                  "adapter_without_base"])
def test_bad_input_fails_clearly_and_writes_nothing(case, tiny_models, pairs_dir, tmp_path):
    model, data, extra = str(tiny_models["rm"]), pairs_dir, []
    if case == "missing_model":
        model, message = str(tmp_path / "no-such-model"), "does not exist"
    elif case == "causal_lm_without_init":
        model, message = str(tiny_models["lm"]), "model.init=causal_lm_new_head"
    elif case == "missing_columns":
        data = tmp_path / "bad-data"
        Dataset.from_list([{"problem": "p", "answer": "a", "rejected": "b"}]).save_to_disk(str(data))
        message = "missing column"
    elif case == "short_data":
        extra, message = ["dataset.max_examples=1000", "dataset.refuse_short_data=true"], "only 48 pairs"
    else:
        model = tmp_path / "orphan-adapter"
        model.mkdir()
        (model / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone"),
                                                               "peft_type": "LORA"}))
        message = "cannot load its base model"
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message):
        train_reward_model(compose_config("demo_math", tiny_run(model, data, out, *extra)))
    assert not out.exists() and not checkpoint_dir(out).exists()


def test_the_script_reports_bad_input_in_one_line_with_exit_code_1(tmp_path):
    result = subprocess.run(
        [sys.executable, "train_reward_model.py", "--config-name=demo_math",
         f"model.model_name_or_path={tmp_path / 'missing'}", f"output_dir={tmp_path / 'out'}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not exist" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- launchers -----------------------------------------------------------------------------------------------


def test_the_grids_deepspeed_launch_trains_in_bf16_and_accumulates_gradients_in_fp32(tiny_models, pairs_dir,
                                                                                      tmp_path):
    """The grid's own launcher (`accelerate launch --config_file=deepspeed/1_1GPU.yaml`), two processes on this CPU
    (DeepSpeed's CPU accelerator, gloo), the model in bf16 as on the GPU: the engine's effective settings, read from
    the engine itself, say that the 16 micro-steps' gradients add up in fp32, not in DeepSpeed's default (the model
    dtype)."""
    out = tmp_path / "zero1"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file=deepspeed/1_1GPU.yaml",
               "--num_processes", "2", "--main_process_port", str(free_port()), "train_reward_model.py",
               "--config-name=demo_math",
               *tiny_run(tiny_models["rm"], pairs_dir, out, "train.max_steps=2", "train.per_device_train_batch_size=2",
                         "train.gradient_accumulation_steps=2", "model.dtype=bfloat16")]
    result = subprocess.run(command, cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").exists() and (out / "log_history.json").exists()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_processes"] == 2
    assert summary["deepspeed"] == {"zero_stage": 1, "model_dtype": "torch.bfloat16",
                                    "grad_accum_dtype": "torch.float32"}
    assert "gradients accumulated in torch.float32" in result.stdout


@pytest.mark.parametrize("launch_config", sorted(p.name for p in (REPO_ROOT / "deepspeed").glob("*.yaml")))
def test_every_launch_config_asks_deepspeed_for_fp32_gradient_accumulation(launch_config):
    """What DeepSpeed's own config parser reads from the file each launch config names."""
    import yaml
    from deepspeed.runtime.config import DeepSpeedConfig, DtypeEnum

    launch = yaml.safe_load((REPO_ROOT / "deepspeed" / launch_config).read_text())
    config = json.loads((REPO_ROOT / launch["deepspeed_config"]["deepspeed_config_file"]).read_text())
    concrete = {**config, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 16,
                "train_batch_size": 32, "gradient_clipping": 1.0, "bf16": {"enabled": True}, "fp16": {"enabled": False}}
    parsed = DeepSpeedConfig(concrete)  # world size 1 without a process group
    assert DtypeEnum(parsed.grad_accum_dtype).value == torch.float32
    assert parsed.zero_optimization_stage == int(launch_config[0])
    assert "mixed_precision" not in launch  # set by the Trainer from the hardware (a file config refuses both)


def test_trl_conversational_preference_data_trains_directly(tiny_models, tmp_path):
    rows = [{"chosen": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": r["problem"]},
                        {"role": "assistant", "content": r["accepted"]}],
             "rejected": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": r["problem"]},
                          {"role": "assistant", "content": r["rejected"]}]} for r in synthetic_pairs(8)]
    data = tmp_path / "trl.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "trl_run"
    summary = train_reward_model(compose_config("demo_math", tiny_run(tiny_models["rm"], data, out, "train.max_steps=1")))
    assert summary["pairs"]["kept"] == 8 and (out / "adapter_model.safetensors").exists()


def test_a_negative_learning_rate_is_one_line_and_leaves_nothing(tiny_models, pairs_dir, tmp_path):
    out = tmp_path / "neg"
    with pytest.raises(UserError, match=r"train\.learning_rate: must be positive, got -1\.0"):
        train_reward_model(compose_config("demo_math", tiny_run(tiny_models["rm"], pairs_dir, out,
                                                                "train.learning_rate=-1")))
    assert list(tmp_path.iterdir()) == []  # no output_dir, no checkpoints dir


def test_a_training_that_stopped_learning_warns(tiny_models, pairs_dir, tmp_path):
    out = tmp_path / "blown"
    summary = train_reward_model(compose_config("demo_math", tiny_run(
        tiny_models["rm"], pairs_dir, out, "train.learning_rate=1e6", "train.max_steps=4", "train.logging_steps=1")))
    assert len(summary["warnings"]) == 1 and "loss sat at ln 2" in summary["warnings"][0]
    assert json.loads((out / "training_summary.json").read_text())["warnings"] == summary["warnings"]


@pytest.mark.parametrize("padding_free", [False, True])
def test_centring_and_a_margin_from_the_verifiers_scores_change_the_loss_as_trl_defines_them(tiny_models, tmp_path,
                                                                                         padding_free):
    """Off by default (the paper's runs); on, the first step's loss is TRL's Bradley-Terry loss with the margin
    and the centring penalty, and the settings are recorded."""
    import math

    from datasets import Dataset, DatasetDict

    rows = [{**row, "accepted_score": 1.0, "rejected_score": 0.25} for row in synthetic_pairs(8)]
    data = tmp_path / "scored"
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(data))
    losses = {}
    for name, extra in {"plain": [], "terms": ["train.margin_scale=2.0", "train.center_rewards_coefficient=0.5"]}.items():
        out = tmp_path / name
        cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], data, out, "train.max_steps=1",
                                                   "train.per_device_train_batch_size=8", "train.disable_dropout=true",
                                                   f"train.padding_free={str(padding_free).lower()}", *extra))
        summary = train_reward_model(cfg)
        losses[name] = json.loads((out / "log_history.json").read_text())[0]
    assert summary["loss_terms"] == {"center_rewards_coefficient": 0.5, "margin_scale": 2.0}
    plain, terms = losses["plain"], losses["terms"]
    # Same model, same batch: the margin shifts every pair's logit by 2 × 0.75 and centring adds a positive penalty.
    assert terms["loss"] > plain["loss"] + 0.5 and plain["loss"] == pytest.approx(
        -math.log(1 / (1 + math.exp(-plain["margin"]))), abs=0.1)


def test_a_margin_without_score_columns_is_refused_in_one_line(tiny_models, tmp_path):
    out = tmp_path / "out"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], write_pairs(tmp_path / "pairs", 8), out,
                                               "train.margin_scale=1.0"))
    with pytest.raises(UserError, match=r"train\.margin_scale=1\.0 needs the pairs' accepted_score and rejected_score"):
        train_reward_model(cfg)
    assert not out.exists()
