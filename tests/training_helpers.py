"""Shared pieces of the training and merge tests: synthetic pair data, composed configs, a plain batch scorer."""

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from reward_transfer.conversations import encode_conversation
from reward_transfer.models import reward_token_id

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs" / "train_reward_model"
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def synthetic_pairs(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Pairs whose accepted answer carries a learnable signal: it states a boxed answer, the rejected one doesn't."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        filler = "x = 5, so 2x + 3 = 13. " * rng.randint(0, 3)
        rows.append({
            "problem": f"What is {a} + {b}?",
            "accepted": f"We add the numbers. {filler}The final answer is \\boxed{{{a + b}}}.",
            "rejected": f"Compute 17 \\times 23 = 391. {filler}Hence the answer is {a * b}.",
        })
    return rows


def write_pairs(path: Path, train: int, eval_: int = 0, seed: int = 0) -> Path:
    """A pair DatasetDict (splits train, eval) on disk, as the generation stage writes it."""
    rows = synthetic_pairs(train + eval_, seed)
    DatasetDict({"train": Dataset.from_list(rows[:train]),
                 "eval": Dataset.from_list(rows[train:] or rows[:1])}).save_to_disk(str(path))
    return path


def compose_config(config_name: str, overrides: list[str] = ()) -> DictConfig:
    """The config `train_reward_model.py --config-name=<config_name> <overrides>` would run with."""
    import reward_transfer.training  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def tiny_run(model: str, data: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a fast tiny run (a few optimizer steps on CPU)."""
    return [f"model.model_name_or_path={model}", f"dataset.datasets=[{{name_or_path:{data},split:train}}]",
            f"output_dir={output_dir}", "train.per_device_train_batch_size=4", "model.max_length=128", *extra]


@torch.no_grad()
def score(model: torch.nn.Module, tokenizer, problems: list[str], answers: list[str], max_length: int = 512
          ) -> torch.Tensor:
    """Scores of (problem, answer) conversations in one right-padded batch, through the shared scoring protocol."""
    token = reward_token_id(model)
    ids = [encode_conversation(tokenizer, p, a, max_length, token).input_ids for p, a in zip(problems, answers,
                                                                                                strict=True)]
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    attention_mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()


def pair_accuracy(model: torch.nn.Module, tokenizer, rows: list[dict[str, str]]) -> float:
    """Share of pairs whose accepted answer scores higher."""
    problems = [r["problem"] for r in rows]
    chosen = score(model, tokenizer, problems, [r["accepted"] for r in rows])
    rejected = score(model, tokenizer, problems, [r["rejected"] for r in rows])
    return (chosen > rejected).float().mean().item()


def interrupt_at_step(monkeypatch, trainer_class: type, step: int, run: Callable[[], object]) -> None:
    """Run `run()` with `trainer_class.training_step` raising KeyboardInterrupt (a Ctrl-C) at its `step`-th call,
    and expect the interrupt; the trainer is restored afterwards."""
    original, calls = trainer_class.training_step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt(f"interrupted at training step {step}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_class, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(trainer_class, "training_step", original)
