"""The SFT stage: supervised fine-tuning of a causal LM on a domain's reference solutions (TRL's `SFTTrainer`),
the base of that domain's ground-truth reward model, as `train_sft_model.py`.

The data is disjoint from the reward-model data by construction: every problem of the pair datasets named in
`dataset.exclude` (their pairs and candidates, by problem id) is left out before the SFT problems are drawn
(seeded), and `sft_problems.json` records which were used. Prompts are the ones generation sends, rendered with
the base model's chat template; the loss is on the assistant turn only. The output is a standalone causal LM
(LoRA merged) with its tokenizer, loadable by `train_reward_model.py` as `model.init=causal_lm_new_head`.
Reruns and resumes follow the rule of every stage (`reward_transfer.rerun`), checkpoints as training keeps them.
"""

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed
from trl import SFTTrainer

from reward_transfer.data import load_table
from reward_transfer.domains import get_domain, resolve_columns
from reward_transfer.errors import UserError
from reward_transfer.generation.problems import ProblemRow, read_problem_rows, stable_hash
from reward_transfer.generation.store import PARTITION
from reward_transfer.models import (
    _load_config,
    _model_family,
    load_causal_lm,
    load_tokenizer,
)
from reward_transfer.remote_code import write_legacy_rope_scaling
from reward_transfer.rerun import is_complete, result_settings, to_plain, write_settings
from reward_transfer.sft_schema import RESUMABLE_KEYS
from reward_transfer.storage import atomic_write_json, atomic_write_text, ensure_writable, replace_dir
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

log = logging.getLogger(__name__)

SFT_PROBLEMS = "sft_problems.json"


class CountedSFTTrainer(WholeRunCounters, SFTTrainer):
    """TRL's SFTTrainer whose `num_tokens` survives a resume."""


def _validate(cfg: DictConfig) -> None:
    get_domain(cfg.domain)
    train, data = cfg.train, cfg.dataset
    for key, ok in (("train.learning_rate", train.learning_rate > 0),
                    ("train.per_device_train_batch_size", train.per_device_train_batch_size >= 1),
                    ("train.gradient_accumulation_steps", train.gradient_accumulation_steps >= 1),
                    ("train.epochs", train.epochs > 0 or train.max_steps > 0),
                    ("dataset.held_out", 0 <= data.held_out < 1),
                    ("dataset.num_problems", data.num_problems is None or data.num_problems >= 2),
                    ("dataset.solutions_per_problem", data.solutions_per_problem is None
                     or data.solutions_per_problem >= 1),
                    ("model.max_length", cfg.model.max_length >= 16)):
        if not ok:
            raise UserError(f"{key}: out of range ({OmegaConf.select(cfg, key)})")


def excluded_problem_ids(sources: list[str]) -> set[str]:
    """The problems SFT must not see: each pair dataset's reward-model share (its `problem_partition.json`: every
    problem its generation could pair), and the problems of its pairs (every split) and candidates. Data without a
    problem_id column (the published pairs) is identified as generation does: by the hash of the problem text."""
    ids: set[str] = set()
    for source in sources:
        path = Path(source).expanduser()
        if (path / PARTITION).is_file():
            ids.update(json.loads((path / PARTITION).read_text())["rm_problem_ids"])
        for split in ("train", "eval"):
            table = load_table(str(path), split)
            ids.update(table["problem_id"] if "problem_id" in table.column_names
                       else (stable_hash("problem", text) for text in table["problem"]))
        if (path / "candidates").is_dir():
            ids.update(load_table(str(path / "candidates"))["problem_id"])
    return ids


def sft_examples(cfg: DictConfig) -> tuple[Dataset, Dataset, dict]:
    """(training examples, held-out examples, the record of which problems were used and why others were not)."""
    domain = get_domain(cfg.domain)
    if domain.solutions is None:
        raise UserError(f"domain: {domain.name} has no reference solutions to fine-tune on")
    data, prompt = OmegaConf.to_object(cfg.dataset), OmegaConf.to_object(cfg.prompt)  # dataclasses, as generation's
    rows, skipped = read_problem_rows(cfg.domain, data, prompt, cfg.seed, key="domain")
    column = resolve_columns(domain, cfg.dataset.columns)[domain.solution_role]
    if rows and column not in rows[0].row:
        raise UserError(f"dataset.columns.{domain.solution_role}: no column {column} in the data (columns: "
                        f"{', '.join(rows[0].row)})")
    excluded = excluded_problem_ids(list(cfg.dataset.exclude))
    columns = resolve_columns(domain, cfg.dataset.columns)
    usable: list[tuple[ProblemRow, list[str]]] = []
    for row in rows:
        if row.problem_id in excluded:
            skipped["in the reward-model data (dataset.exclude)"] += 1
            continue
        solutions = domain.solutions(row.row, columns, row.reference)[:cfg.dataset.solutions_per_problem]
        if not solutions:
            skipped[f"no reference solution in {column}"] += 1
            continue
        usable.append((row, solutions))
    if len(usable) < 2:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "no rows"
        given = [s for s in cfg.dataset.exclude if not (Path(s).expanduser() / PARTITION).is_file()]
        fix = (f"the given pair data ({', '.join(given)}) was not generated here, so no share was reserved: give SFT "
               "other problems (dataset.datasets) or use published SFT models (reproduce.py: profile.sft.train=false)"
               if given else "reserve a share of the domain's problems for SFT when generating the pairs "
               "(dataset.sft_share; reproduce.py: profile.sft.share)")
        raise UserError(f"dataset.datasets: {len(usable)} problems with a reference solution left for SFT ({reasons}); "
                        + fix)
    usable.sort(key=lambda item: stable_hash("sft", cfg.seed, item[0].problem_id))
    usable = usable[:cfg.dataset.num_problems] if cfg.dataset.num_problems else usable
    held = max(1, round(cfg.dataset.held_out * len(usable))) if cfg.dataset.held_out > 0 else 0

    def examples(items: list[tuple[ProblemRow, list[str]]]) -> Dataset:
        return Dataset.from_list([{"prompt": [{"role": "user", "content": row.prompt}],
                                   "completion": [{"role": "assistant", "content": solution}]}
                                  for row, solutions in items for solution in solutions])

    record = {"domain": domain.name, "exclude": list(cfg.dataset.exclude), "excluded_problems": len(excluded),
              "skipped": dict(skipped), "held_out": [row.problem_id for row, _ in usable[:held]],
              "train": [row.problem_id for row, _ in usable[held:]]}
    return examples(usable[held:]), examples(usable[:held]) if held else None, record


def _check_base(cfg: DictConfig) -> bool:
    """The base must be a causal LM: a reward model (or anything else) is refused before any work. Returns
    whether its remote code is trusted (InternLM2's: its own model and slow SentencePiece tokenizer classes)."""
    name = cfg.model.model_name_or_path
    config, trusted = _load_config(name, cfg.model.trust_remote_code)
    try:
        _model_family(config, "causal_lm_new_head", name)
    except UserError as err:
        raise UserError(f"model.model_name_or_path: {name} is not a causal LM to fine-tune ({err}); SFT starts "
                        "from a causal LM such as the base a reward model was made from") from err
    return bool(trusted)


def _sft_arguments(cfg: DictConfig, checkpoints: Path, held_out: bool):
    from trl import SFTConfig

    train = cfg.train
    return SFTConfig(
        # The held-out loss before training is the Trainer's own evaluation at step 0 (`eval_on_start`), logged
        # with the checkpoints: `trainer.evaluate()` before `train()` would build DeepSpeed's inference engine
        # (refused under ZeRO-1/2, and it breaks the training engine under ZeRO-3), and a resumed run would have
        # nothing to evaluate "before" with.
        eval_on_start=held_out, eval_strategy="no",
        **hardware_arguments(cfg, SFTConfig), output_dir=str(checkpoints),
        per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, num_train_epochs=train.epochs,
        max_steps=train.max_steps, learning_rate=train.learning_rate, lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_steps, weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm,
        max_length=cfg.model.max_length, completion_only_loss=True, packing=False,
        logging_steps=train.logging_steps, save_steps=train.save_steps, save_total_limit=train.save_total_limit,
        seed=cfg.seed, report_to=["wandb"] if cfg.logging.wandb else [], run_name=cfg.logging.run_name or cfg.name,
        dataset_num_proc=None,
    )


def _model_card(cfg: DictConfig, summary: dict) -> str:
    return f"""---
tags: [sft]
base_model: {cfg.model.model_name_or_path}
---
# {cfg.name}

`{cfg.model.model_name_or_path}` supervised-fine-tuned on {summary['train_examples']} reference solutions of
{summary['train_problems']} {cfg.domain} problems ({'LoRA, merged' if cfg.model.lora.enable else 'full fine-tuning'}),
none of them in the reward-model data ({', '.join(cfg.dataset.exclude) or 'no exclusion given'}; see {SFT_PROBLEMS}).
Held-out loss {summary['held_out_loss_before']} → {summary['held_out_loss_after']}.
Use as the base of the {cfg.domain} ground-truth RM: `train_reward_model.py model.model_name_or_path=<this directory>
model.init=causal_lm_new_head`.
"""


def train_sft_model(cfg: DictConfig) -> dict:
    """Fine-tune `cfg.model` on the domain's reference solutions; write the merged causal LM to `cfg.output_dir`."""
    _validate(cfg)
    output_dir = Path(cfg.output_dir)
    ensure_writable(output_dir, "output_dir", parent=True)
    settings = to_plain(result_settings(cfg, RESUMABLE_KEYS))
    finished = (output_dir / "config.json").is_file() and (output_dir / SFT_PROBLEMS).is_file()
    if finished:
        clear_stale_checkpoints(output_dir, "train_sft_model")
    if is_complete("train_sft_model", output_dir, settings, cfg.overwrite, finished):
        return json.loads((output_dir / "training_summary.json").read_text())
    train_rows, held_rows, record = sft_examples(cfg)  # bad data fails in seconds, before the model loads
    trusted = _check_base(cfg)
    checkpoints = checkpoint_dir(output_dir)
    # Sets up the process group: each process then knows its rank.
    args = _sft_arguments(cfg, checkpoints, held_out=held_rows is not None)
    state = PartialState()
    resume = checkpoint_to_resume(cfg, checkpoints, settings, "train_sft_model")

    set_seed(cfg.seed)
    model = load_causal_lm(cfg.model.model_name_or_path, device=args.device,
                           dtype=cfg.model.dtype or ("bfloat16" if args.bf16 else "float32"), trust_remote_code=trusted)
    tokenizer = load_tokenizer(cfg.model.tokenizer_name_or_path or cfg.model.model_name_or_path,
                               trust_remote_code=trusted)
    peft_config = None
    if cfg.model.lora.enable:
        from peft import LoraConfig

        lora = cfg.model.lora
        targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
        peft_config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                                 target_modules=targets, task_type="CAUSAL_LM")
    trainer = CountedSFTTrainer(model=model.train(), args=args, train_dataset=train_rows, eval_dataset=held_rows,
                                processing_class=tokenizer, peft_config=peft_config,
                                callbacks=[LogHistoryWriter(checkpoints / "log_history.json")])
    trainer.restore_counters(resume)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    resumed = account_for_resume(trainer, resume)
    before = next((e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == 0),
                  None)
    after = trainer.evaluate().get("eval_loss") if held_rows is not None else None
    summary = _finalize(trainer, cfg, tokenizer, record, output_dir, checkpoints, settings, trusted=trusted, summary={
        "name": cfg.name, "domain": cfg.domain, "base_model": cfg.model.model_name_or_path,
        "steps": trainer.state.global_step, "train_problems": len(record["train"]),
        "held_out_problems": len(record["held_out"]), "train_examples": len(train_rows),
        "held_out_loss_before": None if before is None else round(before, 4),
        "held_out_loss_after": None if after is None else round(after, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "train_loss": None if (loss := trainer.whole_run_train_loss()) is None else round(loss, 4),
        "num_tokens": int(trainer._total_train_tokens),
        **resumed,
        "deepspeed": deepspeed_settings(trainer),
        "warnings": learning_warnings([e for e in trainer.state.log_history if "loss" in e]),
    })
    if state.is_main_process:
        print(_summary_text(summary, output_dir), flush=True)
    return summary


@contextlib.contextmanager
def _outside_zero3() -> Iterator[None]:
    """Load models whole in this process while a ZeRO-3 run is active: transformers partitions every model it loads
    as long as its DeepSpeed config is registered (a module-level weak reference, with no public way to restore)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered


def _merged_model(cfg: DictConfig, saved: Path, trusted: bool) -> Any:
    """The standalone causal LM of a finished run, built on the CPU from what `save_model` wrote: the base with the
    saved LoRA adapter merged in, in the base's stored dtype (full fine-tuning: the saved model itself).

    Never `trainer.model.merge_and_unload()`: under ZeRO-3 the main process holds only its partition of each weight
    (empty tensors), while `save_model` gathers the full adapter (`stage3_gather_16bit_weights_on_model_save`)."""
    from peft import PeftModel

    from reward_transfer.merging import stored_dtype

    if not cfg.model.lora.enable:
        return load_causal_lm(str(saved), device="cpu", dtype=stored_dtype(str(saved)), trust_remote_code=trusted)
    base = load_causal_lm(cfg.model.model_name_or_path, device="cpu", dtype=torch.float32, trust_remote_code=trusted)
    merged = PeftModel.from_pretrained(base, str(saved)).merge_and_unload()
    return merged.to(stored_dtype(cfg.model.model_name_or_path))


def _finalize(trainer: Any, cfg: DictConfig, tokenizer: Any, record: dict, output_dir: Path, checkpoints: Path,
              settings: dict, summary: dict, trusted: bool) -> dict:
    """The merged causal LM, tokenizer, logs and records into a staging dir, swapped in as output_dir."""
    from reward_transfer.merging import copy_remote_code

    state = PartialState()
    saved = checkpoints / "saved"
    trainer.save_model(str(saved))  # collective: gathers ZeRO-3 partitions; writes on the main process only
    if state.is_main_process:
        staging = checkpoints / "final"
        shutil.rmtree(staging, ignore_errors=True)
        with _outside_zero3():
            _merged_model(cfg, saved, trusted).save_pretrained(staging)
        write_legacy_rope_scaling(staging)
        tokenizer.save_pretrained(staging)
        copy_remote_code(cfg.model.model_name_or_path, staging)
        atomic_write_json(staging / "log_history.json", trainer.state.log_history)
        atomic_write_json(staging / SFT_PROBLEMS, record)
        atomic_write_json(staging / "training_summary.json", summary)
        atomic_write_text(staging / "sft_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        atomic_write_text(staging / "README.md", _model_card(cfg, summary))
        write_settings(staging, settings)
        replace_dir(staging, output_dir)
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    return summary


def _summary_text(summary: dict, output_dir: Path) -> str:
    lines = [f"SFT model '{summary['name']}' ({summary['domain']}) trained -> {output_dir}",
             f"  base {summary['base_model']}; {summary['train_examples']} solutions of {summary['train_problems']} "
             f"problems, {summary['held_out_problems']} held out; {summary['steps']} steps, {summary['seconds']} s",
             f"  held-out loss {summary['held_out_loss_before']} -> {summary['held_out_loss_after']}; "
             f"problems used: {output_dir / SFT_PROBLEMS}",
             *(f"  WARNING: {warning}" for warning in summary["warnings"])]
    return "\n".join(lines)

