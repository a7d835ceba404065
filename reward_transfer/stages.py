"""The one stage table: every script of the project, the function it runs, its config schema, and how it launches.

Everything that needs to know the stages asks here: the command-line check (`cli`), the grid (`grid`), the
install check. A stage with a schema is a Hydra script (`configs/<name>/`); one without takes `--flags`.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward_transfer.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class Stage:
    """One script: `<name>.py` at the repository root (or a module for `tiny`)."""

    name: str
    function: str  # "module:function" the script runs (in-process steps call it directly)
    schema: str | None = None  # the module registering its Hydra schema (None: an argparse script)
    launched: bool = False  # run under `profile.launcher` (accelerate / DeepSpeed) when the grid sets one
    gpu: bool = False  # uses the GPU on a GPU machine (executors give it one; the cost model counts it)

    @property
    def config_dir(self) -> Path:
        return CONFIGS / self.name

    def load(self) -> Callable[..., Any]:
        """The stage function (importing its module)."""
        module, function = self.function.split(":")
        return getattr(importlib.import_module(module), function)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("generate_preference_data", "reward_transfer.generation:generate_preference_data",
          "reward_transfer.generation.schema", gpu=True),
    Stage("train_sft_model", "reward_transfer.sft:train_sft_model", "reward_transfer.sft_schema", True, True),
    Stage("train_reward_model", "reward_transfer.training:train_reward_model", "reward_transfer.training_schema",
          True, True),
    Stage("eval", "reward_transfer.evaluation:evaluate", "reward_transfer.evaluation_schema", True, True),
    Stage("active_data_selection", "reward_transfer.active_learning:select_pairs", "reward_transfer.selection_schema",
          True, True),
    Stage("merge_peft_model", "reward_transfer.merging:merge_adapter"),  # merges on the CPU, exactly (fp32)
    Stage("interpolate_reward_model", "reward_transfer.interpolation:interpolate_reward_model",
          "reward_transfer.interpolation_schema"),  # on the CPU, as merges
    Stage("active_learning_loop", "reward_transfer.active_learning_loop:run_active_learning",
          "reward_transfer.active_learning_loop"),
    Stage("reproduce", "reward_transfer.grid.reproduce:reproduce", "reward_transfer.grid.profile"),
    Stage("report", "reward_transfer.reporting:write_report"),
    Stage("tiny", "reward_transfer.tiny:ensure_tiny_models"),
)}


def get_stage(name: str) -> Stage:
    """The stage `name`; an unknown one is a one-line error listing the known ones."""
    if name not in STAGES:
        raise UserError(f"unknown stage '{name}' (known: {', '.join(STAGES)})")
    return STAGES[name]


def hydra_stages() -> list[Stage]:
    return [stage for stage in STAGES.values() if stage.schema]
