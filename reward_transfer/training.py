"""Stage 2: train a reward model on preference pairs with LoRA through TRL's `RewardTrainer`.

`train_reward_model(cfg)` is the stage function behind `train_reward_model.py`. The run trains into
`<output_dir's parent>/.<name>.checkpoints` and only at the end moves the finished adapter (head included),
tokenizer, `log_history.json`, `train_config.yaml`, `reward_model.json` and a model card into `output_dir`.
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from transformers import set_seed
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from reward_transfer.errors import UserError
from reward_transfer.hub import push_folder
from reward_transfer.memory_plan import MemoryPlan, ModelShape, gpu_share, lora_parameters, plan_memory
from reward_transfer.models import (
    REWARD_MODEL_INFO,
    load_reward_model,
    reward_head_name,
    reward_token_id,
    unwrap_model,
)
from reward_transfer.padding_free import PaddingFreeCollator, PaddingFreeRewardTrainer
from reward_transfer.rerun import (
    is_complete,
    result_settings,
    to_plain,
    write_settings,
)
from reward_transfer.storage import atomic_write_json, atomic_write_text, ensure_writable, replace_dir
from reward_transfer.training_data import PairStats, encode_rows, load_pair_rows
from reward_transfer.training_runs import (
    LogHistoryWriter,
    WholeRunCounters,
    account_for_resume,
    checkpoint_dir,
    checkpoint_to_resume,
    clear_stale_checkpoints,
    deepspeed_settings,
    hardware_arguments,
    learning_warnings,
)
from reward_transfer.training_schema import RESUMABLE_KEYS

log = logging.getLogger(__name__)


class CountedRewardTrainer(WholeRunCounters, RewardTrainer):
    """TRL's RewardTrainer counting the tokens it trains on (surviving a resume), whose margin never reaches the
    model (remote-code forwards take no **kwargs)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs)
        if "margin" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        scored = {"attention_mask": inputs["attention_mask"], "margin": inputs["margin"]}
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        return super().compute_loss(lambda **_: outputs, scored, return_outputs, num_items_in_batch)


class CountedPaddingFreeRewardTrainer(WholeRunCounters, PaddingFreeRewardTrainer):
    """The padding-free trainer counting the tokens it trains on (surviving a resume)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

LONG_PAIR_POLICIES = ("truncate", "drop")
INIT_MODES = ("reward_model", "causal_lm_new_head")
RESULT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "log_history.json",
                "train_config.yaml", "adapter_config.json")


def _validate(cfg: DictConfig) -> None:
    if cfg.model.init not in INIT_MODES:
        raise UserError(f"model.init: '{cfg.model.init}' is not one of {', '.join(INIT_MODES)}")
    if cfg.dataset.long_pairs not in LONG_PAIR_POLICIES:
        raise UserError(f"dataset.long_pairs: '{cfg.dataset.long_pairs}' is not one of {', '.join(LONG_PAIR_POLICIES)}")
    if cfg.model.max_length < 8:
        raise UserError(f"model.max_length: {cfg.model.max_length} is too small")
    if cfg.dataset.max_examples is not None and cfg.dataset.max_examples <= 0:
        raise UserError(f"dataset.max_examples: must be positive or null, got {cfg.dataset.max_examples}")
    if torch.cuda.device_count() > 1 and PartialState().num_processes == 1:
        raise UserError(f"{torch.cuda.device_count()} GPUs visible but no launcher: run under `accelerate launch "
                        "--config_file=deepspeed/<n>_<gpus>GPU.yaml` or make one GPU visible (CUDA_VISIBLE_DEVICES=0)")
    train = cfg.train
    for key, value, ok in (("learning_rate", train.learning_rate, train.learning_rate > 0),
                           ("per_device_train_batch_size", train.per_device_train_batch_size,
                            train.per_device_train_batch_size >= 1),
                           ("gradient_accumulation_steps", train.gradient_accumulation_steps,
                            train.gradient_accumulation_steps >= 1),
                           ("epochs", train.epochs, train.epochs > 0 or train.max_steps > 0),
                           ("warmup_steps", train.warmup_steps, train.warmup_steps >= 0),
                           ("logging_steps", train.logging_steps, train.logging_steps >= 1),
                           ("save_steps", train.save_steps, train.save_steps >= 1)):
        if not ok:
            raise UserError(f"train.{key}: must be positive, got {value}")
    if cfg.model.freeze_head and not cfg.model.lora.enable:
        raise UserError("model.freeze_head=true needs model.lora.enable=true (the original froze the head under LoRA)")


def _is_finished(output_dir: Path) -> bool:
    """A finished run: `_finalize` moved these in last-but-one and last (the swap is one rename)."""
    return (output_dir / "log_history.json").is_file() and (output_dir / "train_config.yaml").is_file()


def _lora_config(cfg: DictConfig, head: str):
    from peft import LoraConfig

    lora = cfg.model.lora
    targets = lora.target_modules
    targets = targets if isinstance(targets, str) else list(targets)
    # The head is saved whole (modules_to_save), never LoRA-adapted. PEFT's SEQ_CLS task only auto-saves heads
    # named score/classifier, so InternLM2's v_head must be named here explicitly.
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                      target_modules=targets, exclude_modules=[head], modules_to_save=[head])


def _check_head(model: torch.nn.Module, head: str, freeze: bool) -> None:
    """After PEFT wrapping: the head is a saved module, trainable unless the frozen-head switch asks otherwise."""
    module = getattr(unwrap_model(model), head)
    if not hasattr(module, "modules_to_save"):
        raise RuntimeError(f"reward head '{head}' is not in the adapter's modules_to_save: it would be lost on save")
    if freeze:
        # Still saved (as initialised) so the run can be scored reproducibly; only training is switched off.
        module.requires_grad_(False)
        log.warning("model.freeze_head=true: the head '%s' stays as initialised (the original code's behaviour)", head)
    elif not any(param.requires_grad for param in module.parameters()):
        raise RuntimeError(f"reward head '{head}' is not trainable after wrapping")


def _check_saved_head(adapter_dir: Path, head: str) -> None:
    """The classic bug: an adapter that silently lost its head. Fail before the run is published."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        return
    with safe_open(str(weights), "pt") as handle:
        if not any(f".{head}." in key or key.startswith(f"{head}.") for key in handle.keys()):  # noqa: SIM118
            raise RuntimeError(f"saved adapter {adapter_dir} lacks the reward head '{head}'")


def _training_arguments(cfg: DictConfig, checkpoints: Path):
    from trl import RewardConfig

    train = cfg.train
    return RewardConfig(
        **hardware_arguments(cfg, RewardConfig),
        output_dir=str(checkpoints),
        per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_steps,
        optim=train.optim,
        weight_decay=train.weight_decay,
        center_rewards_coefficient=train.center_rewards_coefficient,
        max_grad_norm=train.max_grad_norm,
        disable_dropout=train.disable_dropout,
        max_length=cfg.model.max_length,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        length_column_name="length",
        # Our dataset holds only the collator's columns plus `length`, which the length-grouped sampler needs
        # and which the Trainer would otherwise strip before building the sampler.
        remove_unused_columns=False,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        report_to=["wandb"] if cfg.logging.wandb else "none",
        run_name=cfg.logging.run_name or cfg.name,
        seed=cfg.seed,
        dataloader_num_workers=train.dataloader_num_workers,
        trust_remote_code=bool(cfg.model.trust_remote_code),
    )


def fit_to_memory(cfg: DictConfig, args: Any, model: torch.nn.Module, checkpoints: Path, resumed: bool
                  ) -> dict | None:
    """On a GPU under `train.fit_to_memory`: set the micro-batch and checkpointing from the GPU's memory (a resumed
    run keeps the plan it started with, so it skips exactly the batches it trained on). None: sizes as configured."""
    if not cfg.train.fit_to_memory or not torch.cuda.is_available():
        return None
    recorded = checkpoints / "memory_plan.json"
    if resumed and recorded.is_file():
        plan = MemoryPlan(**json.loads(recorded.read_text()))
    else:
        base, head = unwrap_model(model), reward_head_name(model)
        trainable = lora_parameters(base, cfg.model.lora.rank, head) if cfg.model.lora.enable else sum(
            p.numel() for p in base.parameters())
        shape = ModelShape.of(base, trainable, dtype_bytes=2 if args.bf16 else 4)
        pairs = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
        device_bytes = int(torch.cuda.get_device_properties(args.device).total_memory * gpu_share())
        plan = plan_memory(shape, device_bytes, pairs, cfg.model.max_length)
        if plan is None:
            log.warning("train.fit_to_memory: no micro-batch fits the estimate; keeping the configured sizes")
            return None
        if PartialState().is_main_process:
            atomic_write_json(recorded, plan.to_dict())
    args.per_device_train_batch_size = plan.micro_batch
    args.gradient_accumulation_steps = plan.gradient_accumulation_steps
    checkpointing = "activation_checkpointing" if hasattr(args, "activation_checkpointing") else "gradient_checkpointing"
    setattr(args, checkpointing, plan.gradient_checkpointing)
    return plan.to_dict()


def _model_card(cfg: DictConfig, stats: PairStats, summary: dict) -> str:
    lora = cfg.model.lora
    return f"""---
library_name: peft
base_model: {cfg.model.model_name_or_path}
tags: [reward-model, trl, lora]
---
# {cfg.name}

Reward model trained with TRL's RewardTrainer (Bradley-Terry loss) for the reproduction of "Can Reward Models
Transfer Across Domains in Large Language Models?".

- Base: `{cfg.model.model_name_or_path}` (init: `{cfg.model.init}`, head `{summary['head']}`, \
{'frozen' if cfg.model.freeze_head else 'trained and saved with the adapter'})
- Data: {', '.join(f"`{d.name_or_path}` ({d.split})" for d in cfg.dataset.datasets)}; \
{stats.kept} pairs trained on of {stats.loaded} loaded ({stats.truncated} truncated, \
{stats.dropped_too_long} dropped as longer than {stats.max_length} tokens, {stats.dropped_identical} identical)
- LoRA: {'r ' + str(lora.rank) + ', alpha ' + str(lora.alpha) + ', dropout ' + str(lora.dropout) if lora.enable else 'off (full fine-tuning)'}
- Optimisation: {cfg.train.optim}, LR {cfg.train.learning_rate} ({cfg.train.lr_scheduler_type}), batch \
{cfg.train.per_device_train_batch_size} x {cfg.train.gradient_accumulation_steps} accumulation per device, \
{cfg.train.epochs} epoch(s), max length {cfg.model.max_length}, seed {cfg.seed}
- Result: {summary['steps']} optimizer steps, final training loss {summary['final_loss']}, \
final batch accuracy {summary['final_accuracy']}

Load with `reward_transfer.models.load_reward_model("<this directory>")`; merge with
`python merge_peft_model.py --model_name <this directory>`.
"""


def _finalize(trainer: Any, cfg: DictConfig, stats: PairStats, output_dir: Path, checkpoints: Path, head: str,
              seconds: float, extra: dict) -> dict:
    """Write the finished run into a staging dir, then swap it in as output_dir (main process)."""
    state = PartialState()
    staging = checkpoints / "final"
    trainer.save_model(str(staging))  # collective under DeepSpeed; writes on the main process only
    history = trainer.state.log_history
    train_logs = [entry for entry in history if "loss" in entry]
    session_tokens = trainer.real_tokens - extra.pop("tokens_before_resume")
    summary = {
        "name": cfg.name,
        "head": head,
        "steps": trainer.state.global_step,
        "num_processes": state.num_processes,
        "final_loss": round(train_logs[-1]["loss"], 4) if train_logs else None,
        "final_accuracy": round(train_logs[-1].get("accuracy", float("nan")), 4) if train_logs else None,
        "seconds": round(seconds, 1),
        # Counted in this process (under N processes each sees about 1/N of the batches).
        "tokens": trainer.real_tokens,
        "padding_free": cfg.train.padding_free,
        "padded_tokens": trainer.padded_tokens,  # what padded micro-batches hold (fed to the model unless padding-free)
        "padding_share": 0.0 if cfg.train.padding_free else round(1 - trainer.real_tokens / max(trainer.padded_tokens,
                                                                                               1), 4),
        "tokens_per_second": round(session_tokens / max(seconds, 1e-9), 1),
        "pairs": stats.__dict__,
        "train_loss": None if (loss := trainer.whole_run_train_loss()) is None else round(loss, 4),
        "loss_terms": {"center_rewards_coefficient": cfg.train.center_rewards_coefficient,
                       "margin_scale": cfg.train.margin_scale},
        "deepspeed": deepspeed_settings(trainer),
        **extra,
        "warnings": learning_warnings(train_logs),
    }
    if state.is_main_process:
        if cfg.model.lora.enable and not cfg.model.freeze_head:
            _check_saved_head(staging, head)
        atomic_write_json(staging / "log_history.json", history)
        atomic_write_text(staging / "train_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        atomic_write_json(staging / "training_summary.json", summary)
        write_settings(staging, to_plain(result_settings(cfg, RESUMABLE_KEYS)))
        atomic_write_json(staging / REWARD_MODEL_INFO, {
            "base_model": cfg.model.model_name_or_path,
            "init": cfg.model.init,
            "head": head,
            "head_trained": not cfg.model.freeze_head,
            "reward_token_id": reward_token_id(trainer.model),
            "max_length": cfg.model.max_length,
            "adapter": cfg.model.lora.enable,
        })
        atomic_write_text(staging / "README.md", _model_card(cfg, stats, summary))
        replace_dir(staging, output_dir)
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    return summary


def _print_summary(summary: dict, stats: PairStats, output_dir: Path) -> None:
    lines = [
        f"reward model '{summary['name']}' trained -> {output_dir}",
        f"  pairs: {stats.kept} trained of {stats.loaded} loaded; {stats.truncated} truncated, "
        f"{stats.dropped_too_long} dropped (> {stats.max_length} tokens, policy {stats.policy}), "
        f"{stats.dropped_identical} identical; {stats.sides_from_cache} sides tokenised by an earlier step",
        f"  steps: {summary['steps']}, final loss {summary['final_loss']}, "
        f"final batch accuracy {summary['final_accuracy']}, {summary['seconds']} s",
        f"  tokens: {summary['tokens']} trained ({summary['tokens_per_second']}/s), " + (
            f"padding-free ({summary['padded_tokens'] - summary['tokens']} padding tokens avoided)"
            if summary["padding_free"] else f"padding {100 * summary['padding_share']:.1f}% of the batches"),
        *([f"  memory plan: micro-batch {m['micro_batch']} x {m['gradient_accumulation_steps']} accumulation, "
           f"checkpointing {'on' if m['gradient_checkpointing'] else 'off'} (estimated peak {m['estimated_peak_gib']} "
           f"of {m['device_gib']} GiB)"] if (m := summary.get("memory_plan")) else []),
        *([f"  DeepSpeed: ZeRO-{ds['zero_stage']}, model {ds['model_dtype']}, gradients accumulated in "
           f"{ds['grad_accum_dtype']}"] if (ds := summary.get("deepspeed")) else []),
        f"  head '{summary['head']}' saved with the model; log: {output_dir / 'log_history.json'}",
        *(f"  WARNING: {warning}" for warning in summary.get("warnings", [])),
    ]
    print("\n".join(lines), flush=True)


def _push(cfg: DictConfig, output_dir: Path) -> None:
    push_folder(output_dir, cfg.huggingface.repo_id or cfg.name, cfg.huggingface.private,
                f"train_reward_model {cfg.name}", retry="retry the push alone with huggingface.push_only=true")


def _finished_summary(output_dir: Path) -> dict:
    return json.loads((output_dir / "training_summary.json").read_text())


def train_reward_model(cfg: DictConfig) -> dict:
    """Train the reward model `cfg` describes and write it to `cfg.output_dir`; returns the run summary."""
    _validate(cfg)
    output_dir = Path(cfg.output_dir)
    ensure_writable(output_dir, "output_dir", parent=True)  # checkpoints live beside output_dir
    settings = to_plain(result_settings(cfg, RESUMABLE_KEYS))
    if _is_finished(output_dir):
        clear_stale_checkpoints(output_dir, "train_reward_model")
    if cfg.huggingface.push_only:
        if not _is_finished(output_dir):
            raise UserError(f"huggingface.push_only=true: {output_dir} holds no finished run to push")
        if PartialState().is_main_process:
            _push(cfg, output_dir)
        return _finished_summary(output_dir)
    if is_complete("train_reward_model", output_dir, settings, cfg.overwrite, _is_finished(output_dir)):
        return _finished_summary(output_dir)
    checkpoints = checkpoint_dir(output_dir)
    # The training arguments set up the process group (and ZeRO-3's partitioned loading): before that, every
    # process of a launch would take itself for the main one.
    args = _training_arguments(cfg, checkpoints)
    rows = load_pair_rows(cfg)  # a bad dataset fails in seconds, before anything is written
    state = PartialState()

    if cfg.logging.wandb:
        os.environ.setdefault("WANDB_PROJECT", cfg.logging.project)  # read by the Trainer's W&B callback
    set_seed(cfg.seed)  # the new head of causal_lm_new_head is drawn here
    dtype = cfg.model.dtype or ("bfloat16" if args.bf16 else "float32")
    model, tokenizer = load_reward_model(
        cfg.model.model_name_or_path, device=args.device, dtype=dtype, init=cfg.model.init,
        tokenizer_name_or_path=cfg.model.tokenizer_name_or_path, trust_remote_code=cfg.model.trust_remote_code,
        merge=True,  # an adapter given as the starting model is folded in; a new adapter is trained on top
    )
    # Only now, with data and model known good, is anything written (a bad input leaves no checkpoints dir).
    resume = checkpoint_to_resume(cfg, checkpoints, settings, "train_reward_model")
    head = reward_head_name(model)
    with state.main_process_first():
        pairs, stats = encode_rows(cfg, rows, tokenizer, reward_token_id(model), checkpoints)

    peft_config = _lora_config(cfg, head) if cfg.model.lora.enable else None
    memory = fit_to_memory(cfg, args, model, checkpoints, resume is not None)
    padding_free = cfg.train.padding_free
    collator = PaddingFreeCollator() if padding_free else DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    trainer_class = CountedPaddingFreeRewardTrainer if padding_free else CountedRewardTrainer
    trainer = trainer_class(model=model.train(), args=args, data_collator=collator, train_dataset=pairs,
                            processing_class=tokenizer, peft_config=peft_config,
                            callbacks=[LogHistoryWriter(checkpoints / "log_history.json")])
    if len(trainer.train_dataset) != stats.kept:
        raise RuntimeError(f"RewardTrainer dropped {stats.kept - len(trainer.train_dataset)} pairs after encoding")
    if peft_config is not None:
        _check_head(trainer.model, head, cfg.model.freeze_head)
        if state.is_main_process:
            trainer.model.print_trainable_parameters()

    trainer.restore_counters(resume)
    tokens_before_resume = trainer.real_tokens
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    memory_and_resume = {"memory_plan": memory, "tokens_before_resume": tokens_before_resume,
                         **account_for_resume(trainer, resume)}
    summary = _finalize(trainer, cfg, stats, output_dir, checkpoints, head, time.perf_counter() - started,
                        memory_and_resume)
    if cfg.huggingface.push_to_hub and state.is_main_process:
        _push(cfg, output_dir)
    if state.is_main_process:
        _print_summary(summary, stats, output_dir)
    return summary
