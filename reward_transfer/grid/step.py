"""One step of the grid: one command of the project (script, named config, overrides) and the steps it needs."""

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any

from reward_transfer.stages import get_stage


@dataclass
class Step:
    """`script` with a named config and Hydra overrides, or argparse flags (`args`) and positional arguments."""

    name: str  # unique, "<kind>/<result name>", e.g. "train/math_20k"
    group: str  # for only=/skip=: setup, generate, sft, truth, finetune, cross, eval, active_learning, best_of_n, report
    script: str  # a stage of reward_transfer.stages
    config_name: str | None = None
    overrides: list[str] = field(default_factory=list)
    args: dict[str, str | bool] = field(default_factory=dict)  # --flags of argparse scripts (True: bare flag)
    positional: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # files whose existence means the step is complete
    needs: list[str] = field(default_factory=list)  # steps whose outputs this one reads
    always: bool = False  # run even when done (the report)

    def argv(self, python: str = "python", launcher: str = "") -> list[str]:
        """The command line, as a researcher would type it."""
        if self.script == "tiny":
            program = [python, "-m", "reward_transfer.tiny"]
        elif launcher and get_stage(self.script).launched:
            program = [*shlex.split(launcher), f"{self.script}.py"]
        else:
            program = [python, f"{self.script}.py"]
        if self.config_name is not None:
            return [*program, f"--config-name={self.config_name}", *self.overrides]
        flags = [item for key, value in self.args.items()
                 for item in ([f"--{key}"] if value is True else [f"--{key}", str(value)])]
        return [*program, *self.positional, *flags]

    def command(self, python: str = "python", launcher: str = "") -> str:
        return shlex.join(self.argv(python, launcher))

    def identity(self) -> dict[str, Any]:
        """What the step produces, whatever runs it (launcher, interpreter and executor are left out)."""
        return {"script": self.script, "config_name": self.config_name, "overrides": list(self.overrides),
                "args": dict(self.args), "positional": list(self.positional)}

    def replacing(self) -> "Step":
        """The same step told to replace its finished output (its stage's `overwrite`)."""
        if self.config_name is not None:
            return dataclasses.replace(self, overrides=[*self.overrides, "overwrite=true"])
        if self.script == "merge_peft_model":
            return dataclasses.replace(self, args={**self.args, "overwrite": True})
        return self

    @property
    def slug(self) -> str:
        """The step's name as a file name (logs, markers)."""
        return self.name.replace("/", "__")

    @property
    def uses_gpu(self) -> bool:
        return get_stage(self.script).gpu

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
