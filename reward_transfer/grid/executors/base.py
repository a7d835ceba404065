"""What every executor shares: the launch of a step, the console lines, the end of a run, dependency bookkeeping."""

import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from reward_transfer.errors import UserError
from reward_transfer.grid.profile import ExecutorConfig, ProfileConfig
from reward_transfer.grid.running import Launch, StepOutcome
from reward_transfer.grid.step import Step
from reward_transfer.memory_plan import GPU_SHARE_ENV

DONE, SKIPPED, FAILED, BLOCKED = "done", "skipped", "failed", "blocked"
INTERRUPTED_EXIT = 130


class Console:
    """One line per finished step on the terminal while the steps log to files, a progress bar, the warnings."""

    def __init__(self, steps: list[Step], title: str):
        from tqdm import tqdm

        self.total, self.finished = len(steps), 0
        self.width = max((len(s.name) for s in steps), default=10)
        self.stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)  # stays on the terminal
        self.stream.write(title + "\n")
        # disable=None: a live bar on a terminal; in a log file or CI the numbered lines say the same.
        self.bar = tqdm(total=self.total, file=self.stream, unit="step", dynamic_ncols=True, disable=None)

    def write(self, text: str) -> None:
        self.bar.write(text, file=self.stream)

    def prefix(self, name: str) -> str:
        return f"[{self.finished:>{len(str(self.total))}}/{self.total}] {name:<{self.width}}"

    def report(self, outcome: StepOutcome) -> None:
        self.finished += 1
        where = f" ({outcome.where})" if outcome.where else ""
        text = {SKIPPED: "skipped (done)", DONE: f"done in {outcome.seconds:.1f}s{where}",
                FAILED: f"FAILED after {outcome.seconds:.1f}s{where}",
                BLOCKED: "not run: a step it needs failed"}.get(outcome.status, outcome.status)
        if outcome.note:
            self.write(f"{self.prefix(outcome.step)}  {outcome.note}")
        self.write(f"{self.prefix(outcome.step)}  {text}")
        for warning in outcome.warnings:
            self.write(f"      WARNING: {warning}")
        self.bar.update()

    def close(self) -> None:
        self.bar.close()
        self.stream.close()


class Executor(ABC):
    """Runs the selected steps of a graph into a run folder; returns one outcome per step."""

    def __init__(self, config: ExecutorConfig, profile: ProfileConfig):
        self.config, self.profile = config, profile

    def launch(self, env: dict[str, str] | None = None) -> Launch:
        """Each step as its command line, threads as the profile asks."""
        threads = {"OMP_NUM_THREADS": str(self.profile.cpu_threads)} if self.profile.cpu_threads else {}
        return Launch(in_process=False, python=self.profile.python, launcher=self.profile.launcher,
                      env={**threads, **(env or {})})

    def gpu_share_env(self) -> dict[str, str]:
        """What tells a GPU step its share of the GPU when `steps_per_gpu` steps share one (memory plan, vLLM)."""
        per_gpu = self.config.steps_per_gpu
        return {GPU_SHARE_ENV: f"{1 / per_gpu:.6g}"} if per_gpu > 1 else {}

    def slots(self) -> tuple[int | None, int]:
        """(steps at once on GPUs, or None: GPU steps share the other slots; steps at once without a GPU) for the dry
        run's planned schedule; 0: no limit."""
        return None, 1

    @abstractmethod
    def run(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool) -> list[StepOutcome]:
        """Run (or skip) every step of `steps`; `graph`: every step of the grid, for the inputs' fingerprints."""


def blocked_by(step: Step, outcomes: dict[str, StepOutcome]) -> bool:
    """Whether a step it needs failed or could not run (needs outside the selection finished before: checked)."""
    return any(outcomes[need].status in (FAILED, BLOCKED) for need in step.needs if need in outcomes)


def ready(step: Step, selected: set[str], outcomes: dict[str, StepOutcome]) -> bool:
    """Every step it needs that is part of this run has finished (successfully or not)."""
    return all(need in outcomes for need in step.needs if need in selected)


def finish(outcomes: list[StepOutcome], run: Path, interrupted: list[str] = ()) -> list[StepOutcome]:
    """End a run: an interrupt exits 130 naming what was cut short; failures are one error naming each failed step
    (its command and log tail) and the steps they kept from running; else the outcomes."""
    if interrupted:
        print(f"interrupted: {', '.join(interrupted)}; rerun the same command to resume there (finished steps are "
              f"kept; logs in {Path(run) / 'logs'})", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT)
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        blocked = [o.step for o in outcomes if o.status == BLOCKED]
        done = sum(o.status in (DONE, SKIPPED) for o in outcomes)
        raise UserError("\n".join(o.error for o in failed) + (
            f"\n{len(failed)} failed, {len(blocked)} not run because of them"
            + (f" ({', '.join(blocked)})" if blocked else "") + f", {done} finished")) from None
    return outcomes

