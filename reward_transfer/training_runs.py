"""What reward-model and SFT training runs share: where an unfinished run keeps its checkpoints and how it
resumes, the log kept current, the hardware arguments, the DeepSpeed settings reported, and learning warnings."""

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from omegaconf import DictConfig
from transformers import TrainerCallback

from reward_transfer.errors import UserError
from reward_transfer.rerun import recorded_settings, refuse_other_settings, write_settings
from reward_transfer.storage import atomic_write_json

log = logging.getLogger(__name__)


def checkpoint_dir(output_dir: Path) -> Path:
    """Where an unfinished run keeps its checkpoints (beside output_dir, so output_dir only ever holds a finished run)."""
    return output_dir.parent / f".{output_dir.name}.checkpoints"


def _checkpoint_complete(path: Path) -> bool:
    """The Trainer writes `trainer_state.json` after the weights, optimizer and RNG state: a checkpoint is complete
    only once it is there and parses (a kill mid-save leaves it missing or cut short)."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` (None: none)."""
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1, reverse=True)
    return next((path for path in found if path.is_dir() and _checkpoint_complete(path)), None)


def _prepare_checkpoints(cfg: DictConfig, checkpoints: Path, settings: dict, stage: str) -> Path | None:
    """The checkpoint to resume from (None: start afresh), by the rerun rule: an interrupted run continues only
    under `train.resume=true` and with the same settings; `overwrite=true` starts over. Main process only."""
    interrupted = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    if not interrupted or cfg.overwrite:
        shutil.rmtree(checkpoints, ignore_errors=True)
        if cfg.train.resume and not cfg.overwrite:
            log.info("train.resume=true but %s has no checkpoint: starting from the beginning", checkpoints)
        return None
    if not cfg.train.resume:
        raise UserError(f"{checkpoints} holds an interrupted run: set train.resume=true to continue it "
                        "or overwrite=true to start over")
    recorded = recorded_settings(checkpoints)
    if recorded is not None:
        refuse_other_settings(stage, checkpoints, recorded, settings, what="the interrupted run in")
    resume = last_complete_checkpoint(checkpoints)
    for partial in checkpoints.glob("checkpoint-*"):
        if resume is None or int(partial.name.split("-")[-1]) > int(resume.name.split("-")[-1]):
            log.warning("%s was cut short while being written (no trainer_state.json): removed", partial)
            shutil.rmtree(partial)
    if resume is None:
        print(f"{stage}: no complete checkpoint in {checkpoints}: starting from the beginning", flush=True)
    return resume


def checkpoint_to_resume(cfg: DictConfig, checkpoints: Path, settings: dict, stage: str) -> Path | None:
    """Every process of a launch: the checkpoint to resume from (None: afresh), decided and recorded by the main
    process (the process group must exist: create the training arguments first)."""
    state = PartialState()
    resume = _prepare_checkpoints(cfg, checkpoints, settings, stage) if state.is_main_process else None
    state.wait_for_everyone()
    if not state.is_main_process:
        resume = last_complete_checkpoint(checkpoints) if cfg.train.resume else None
    if state.is_main_process:
        write_settings(checkpoints, settings)
        if resume is not None:
            print(f"{stage}: resuming from step {resume.name.split('-')[-1]} ({resume})", flush=True)
    return resume


class LogHistoryWriter(TrainerCallback):
    """Keep `log_history.json` current in the checkpoint dir, whatever the logger (wandb or none)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            atomic_write_json(self.path, state.log_history)


def hardware_arguments(cfg: DictConfig, config_class: type) -> dict[str, Any]:
    """The TrainingArguments fields every trainer of the project sets alike: precision and device from the
    hardware (TRL turns bf16 on whenever fp16 is off, CPUs included), and gradient checkpointing under the name
    the installed transformers uses (5.21 renamed it `activation_checkpointing`; vLLM's range ends before)."""
    use_cpu = not torch.cuda.is_available()
    bf16 = (not use_cpu and torch.cuda.is_bf16_supported()) if cfg.model.dtype is None else cfg.model.dtype in (
        "bf16", "bfloat16")
    names = {f.name for f in dataclasses.fields(config_class)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {checkpointing: cfg.train.gradient_checkpointing, "bf16": bf16, "use_cpu": use_cpu}


def deepspeed_settings(trainer: Any) -> dict | None:
    """What the DeepSpeed engine of a launched run actually uses (None without DeepSpeed): its ZeRO stage, the
    model's dtype and the dtype micro-step gradients accumulate in (the launch configs ask for fp32)."""
    if not getattr(trainer, "is_deepspeed_enabled", False) or trainer.deepspeed is None:
        return None
    model_dtype, grad_accum_dtype = trainer.deepspeed.get_data_types()
    return {"zero_stage": int(trainer.deepspeed.zero_optimization_stage()), "model_dtype": str(model_dtype),
            "grad_accum_dtype": str(grad_accum_dtype)}


def learning_warnings(train_logs: list[dict]) -> list[str]:
    """A run that stopped learning says so: from some step on, the loss sits at ln 2 (chosen and rejected scored
    alike) and the gradients are zero (e.g. a learning rate that blew the scores up), or the loss never left ln 2."""
    def flat(entry: dict) -> bool:
        return abs(entry["loss"] - math.log(2)) < 1e-3

    def dead(entry: dict) -> bool:
        norm = entry.get("grad_norm")
        return isinstance(norm, int | float) and (norm == 0 or not math.isfinite(norm))

    stuck = 0
    while stuck < len(train_logs) and flat(train_logs[-1 - stuck]) and dead(train_logs[-1 - stuck]):
        stuck += 1
    if stuck:
        since = train_logs[-stuck].get("step", "?")
        return [f"from step {since} on the loss sat at ln 2 = {math.log(2):.4f} with zero gradients: the model "
                "stopped learning (a learning rate too high? check train.learning_rate)"]
    if train_logs and all(flat(entry) for entry in train_logs):
        return [f"the loss stayed at ln 2 = {math.log(2):.4f} in every logged step: the model never told chosen "
                "from rejected (check train.learning_rate, the data and the head)"]
    return []


def clear_stale_checkpoints(output_dir: Path, stage: str) -> None:
    """A finished run's checkpoint folder is stale: the run moved its output in and was killed before deleting
    the folder (main process; called on every start, the "already complete" path included)."""
    stale = checkpoint_dir(output_dir)
    if stale.is_dir() and PartialState().is_main_process:
        print(f"{stage}: removing {stale}, left by a run killed after it finished {output_dir}", flush=True)
        shutil.rmtree(stale)


COUNTERS = "run_counters-{rank}.json"


class WholeRunCounters:
    """For TRL trainers: the run's counters (TRL's `num_tokens`; the real and padded tokens of the micro-batches
    trained on, counted at each training step: the loader runs ahead, and a resume skips batches through it) are
    written into each checkpoint before the Trainer completes it, and restored on resume, so that a resumed run's
    figures cover the whole run."""

    real_tokens = 0
    padded_tokens = 0
    loss_sum_before: float | None = 0.0  # the step losses summed before this session (None: not recorded)

    def count_tokens(self, inputs: dict) -> None:
        """Count a micro-batch's real and padded tokens (training steps only)."""
        from reward_transfer.padding_free import batch_tokens

        if self.model.training:
            real, padded = batch_tokens(inputs)
            self.real_tokens += real
            self.padded_tokens += padded

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / COUNTERS.format(rank=self.args.process_index), self.run_counters())
        super()._save_checkpoint(model, trial)

    def run_counters(self) -> dict[str, Any]:
        # The Trainer sums step losses as it logs (`_total_loss_scalar`) and holds those since the last log in
        # `_tr_loss`: together, the session's summed step losses so far.
        session = getattr(self, "_total_loss_scalar", 0.0) + float(getattr(self, "_tr_loss", 0.0))
        return {"num_tokens": int(getattr(self, "_total_train_tokens", 0)), "real_tokens": self.real_tokens,
                "padded_tokens": self.padded_tokens,
                "loss_sum": None if self.loss_sum_before is None else self.loss_sum_before + session}

    def whole_run_train_loss(self) -> float | None:
        """The mean step loss over the whole run (after `train()`), resumed or not: what the Trainer's `train_loss`
        is for a run made in one session. A checkpoint that did not record its losses: estimated from the log."""
        if self.loss_sum_before is None:
            return whole_run_loss(self.state.log_history)
        steps = self.state.global_step
        return (self.loss_sum_before + self._total_loss_scalar) / steps if steps else None

    def restore_counters(self, checkpoint: Path | None) -> None:
        """Counters as `checkpoint` recorded them (nothing to do for a run started afresh)."""
        path = None if checkpoint is None else checkpoint / COUNTERS.format(rank=self.args.process_index)
        if path is None or not path.is_file():
            if checkpoint is not None:
                log.warning("%s holds no run counters: token counts will cover only the resumed part", checkpoint)
                self.loss_sum_before = None
            return
        counters = json.loads(path.read_text())
        self.loss_sum_before = counters.get("loss_sum")
        self._total_train_tokens = counters.get("num_tokens", 0)
        self.real_tokens, self.padded_tokens = counters.get("real_tokens", 0), counters.get("padded_tokens", 0)


def whole_run_loss(log_history: list[dict]) -> float | None:
    """An estimate of the training loss averaged over every optimizer step of the run, from the logged losses, each
    weighted by the steps it covers (steps after the last log are not in it)."""
    weighted, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            covered = entry["step"] - previous
            weighted, steps, previous = weighted + entry["loss"] * covered, steps + covered, entry["step"]
    return weighted / steps if steps else None


def account_for_resume(trainer: WholeRunCounters, resumed_from: Path | None) -> dict[str, Any]:
    """After `train()`: the final log entry's `train_loss` made whole-run (the session's kept as
    `train_loss_since_resume`), and what the summary says about the resume."""
    if resumed_from is None:
        return {"resumed_from_step": None}
    step = int(resumed_from.name.split("-")[-1])
    log_history = trainer.state.log_history
    final = next((entry for entry in reversed(log_history) if "train_loss" in entry), None)
    whole = trainer.whole_run_train_loss()
    if final is not None and whole is not None:
        final["train_loss_since_resume"] = final["train_loss"]
        final["train_loss"] = whole
    return {"resumed_from_step": step, "note": f"resumed from step {step}: losses, token counts and num_tokens cover "
            "the whole run; seconds and tokens_per_second the resumed part"}
