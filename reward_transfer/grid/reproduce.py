"""`reproduce.py`: plan the study's grid, write `commands.sh` and `grid.json`, hand the graph to an executor."""

import contextlib
import fnmatch
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reward_transfer import run_layout as layout
from reward_transfer.errors import UserError
from reward_transfer.grid.cost import estimate_grid, render_cost
from reward_transfer.grid.executors import get_executor
from reward_transfer.grid.executors.slurm import live_jobs
from reward_transfer.grid.plan import grid_summary, plan_from_config
from reward_transfer.grid.running import StepOutcome
from reward_transfer.grid.script import (
    NOTE_SCRIPTS,
    composed_configs,
    critical_path,
    makespan,
    plan_notes,
    render_script,
)
from reward_transfer.grid.state import RunLock, check_inputs
from reward_transfer.grid.step import Step
from reward_transfer.stages import get_stage
from reward_transfer.storage import atomic_write_json, atomic_write_text


def reproduce(cfg: DictConfig) -> list[StepOutcome]:
    """Plan the grid and write it down; unless `dry_run`, run every selected step with the chosen executor."""
    profile, run = OmegaConf.to_object(cfg.profile), Path(cfg.output_dir)
    executor = get_executor(OmegaConf.to_object(cfg.executor), profile)
    plan = plan_from_config(cfg)
    steps = select_steps(plan.steps, cfg.only, cfg.skip)
    check_configs(steps)
    run.mkdir(parents=True, exist_ok=True)
    # The lock comes first: a second reproduce.py (a dry run too) must not rewrite the grid.json a running one reads.
    with RunLock(run) as lock, _sigterm_as_interrupt():
        lock.acquire(executor.config.name)
        if cfg.dry_run:
            _dry_run(cfg, plan, steps, profile, executor, run)
            return []
        _write_plan(cfg, plan, steps, profile, [])
        queued = live_jobs(run) if executor.config.name != "slurm" else {}
        if queued:
            raise UserError(f"{run} has Slurm jobs still queued or running ({', '.join(sorted(queued.values()))}): "
                            "follow them with executor=slurm, or cancel them (scancel) first")
        check_inputs(steps, run)
        _environment(profile)
        started = time.perf_counter()
        outcomes = executor.run(steps, plan.by_name(), run, cfg.overwrite)
        _summary(profile.name, outcomes, run, time.perf_counter() - started)
    return outcomes


def _write_plan(cfg: DictConfig, plan: Any, steps: list[Step], profile: Any, notes: list[str]) -> Path:
    """commands.sh (always the whole grid; a selection with only=/skip= also gets its own script), grid.json and
    the composed config; returns the script of the selected steps."""
    run = Path(cfg.output_dir)
    script_path = run / ("commands.sh" if len(steps) == len(plan.steps) else "commands_selected.sh")
    for path, listed in {run / "commands.sh": plan.steps, script_path: steps}.items():
        atomic_write_text(path, render_script(listed, profile, notes))
        path.chmod(0o755)
    atomic_write_json(layout.grid_file(run), grid_summary(profile, plan.cells))
    atomic_write_text(run / "reproduce_config.yaml", OmegaConf.to_yaml(cfg))
    return script_path


def _dry_run(cfg: DictConfig, plan: Any, steps: list[Step], profile: Any, executor: Any, run: Path) -> None:
    """Write the plan with its notes and print it, its schedule and, for a device profile, its cost."""
    # Seconds per hundred steps: every step's config is composed only when the cost is estimated.
    composed = composed_configs(plan.steps, None if profile.device else NOTE_SCRIPTS)
    script_path = _write_plan(cfg, plan, steps, profile, plan_notes(plan.steps, profile, composed))
    print(script_path.read_text(), end="")
    print(f"# {len(steps)} of {len(plan.steps)} steps; written to {script_path}")
    print(describe_schedule(steps, executor))
    if profile.device is not None:
        selected = {step.name for step in steps}
        configs = [c for step, c in zip(plan.steps, composed, strict=True) if step.name in selected]
        cost = estimate_grid(steps, configs, profile, executor.config, run)
        atomic_write_json(run / "cost.json", cost.to_dict())
        print(render_cost(cost) + f"\n# cost per step: {run / 'cost.json'}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill <pid>` (SIGTERM) stops a run as Ctrl-C does: its step processes go with it and the lock is freed only
    then, so a rerun never starts a step beside an orphan of this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_schedule(steps: list[Step], executor: Any) -> str:
    """The graph's critical path and, for a concurrent executor, the planned schedule's length, in steps."""
    length, path = critical_path(steps)
    lines = [f"# critical path: {length:.0f} of {len(steps)} steps ({' → '.join(path[:3])}"
             + (f" … {path[-1]}" if len(path) > 3 else "") + ")"]
    gpu_slots, cpu_slots = executor.slots()
    if (gpu_slots, cpu_slots) != (None, 1):
        span = makespan(steps, gpu_slots, cpu_slots)
        lines.append(f"# planned schedule under executor={executor.config.name}: {span:.0f} steps long "
                     f"(one after another: {len(steps)}; the graph allows {length:.0f})")
    return "\n".join(lines)


def _summary(name: str, outcomes: list[StepOutcome], run: Path, seconds: float) -> None:
    ran = [o for o in outcomes if o.status == "done"]
    warned = [o for o in ran if o.warnings]
    print(f"reproduce {name}: {len(ran)} steps run, {len(outcomes) - len(ran)} skipped (already done) in "
          f"{seconds:.0f}s; logs in {run / 'logs'}"
          + (f"; {len(warned)} steps WARNED: {', '.join(o.step for o in warned)}" if warned else ""))
    atomic_write_json(run / "last_run.json", [o.__dict__ for o in outcomes])
    if any(o.step == "report" for o in outcomes):
        print((run / "tables.md").read_text())
        print(f"tables: {run / 'tables.md'}, {run / 'tables.tex'}; figures: {run}/*.png")


def _environment(profile: Any) -> None:
    """Offline profiles never reach the network (`.env` was read by the entry point)."""
    if profile.offline:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
        os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def check_configs(steps: list[Step]) -> None:
    """Every step's named config exists (a new domain without its generation config is named before any work)."""
    for step in steps:
        if step.config_name and not (get_stage(step.script).config_dir / f"{step.config_name}.yaml").is_file():
            raise UserError(f"step {step.name}: no config {step.config_name} in configs/{step.script}/ (add it, or "
                            "set profile.config_names)")


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


def select_steps(steps: list[Step], only: Any, skip: Any) -> list[Step]:
    """Steps whose name or group matches an `only` pattern (all when empty) and no `skip` pattern."""
    only, skip = _as_list(only), _as_list(skip)

    def matches(step: Step, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(step.name, p) or fnmatch.fnmatchcase(step.group, p) for p in patterns)

    known = {s.name for s in steps} | {s.group for s in steps}
    for pattern in only + skip:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in known):
            raise UserError(f"only/skip: '{pattern}' matches no step or group (groups: "
                            f"{', '.join(dict.fromkeys(s.group for s in steps))})")
    return [s for s in steps if (not only or matches(s, only)) and not matches(s, skip)]
