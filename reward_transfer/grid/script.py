"""What the dry run shows: the command list (commands.sh), what the named configs decide, and the graph's critical
path with the schedule an executor would follow."""

from omegaconf import DictConfig

from reward_transfer.grid.profile import ProfileConfig
from reward_transfer.grid.running import compose_configs
from reward_transfer.grid.step import Step


def render_script(steps: list[Step], profile: ProfileConfig, notes: list[str] = ()) -> str:
    """The ordered command list as a shell script a researcher can read or run elsewhere."""
    lines = ["#!/usr/bin/env bash",
             f"# The study's grid, profile '{profile.name}': {len(steps)} commands, in an order that respects every "
             "step's inputs. Run from the repo root.", *(f"# {note}" for note in notes), "set -euo pipefail"]
    group = None
    for step in steps:
        if step.group != group:
            group = step.group
            lines += ["", f"# --- {group}"]
        lines.append(step.command(profile.python, profile.launcher))
    return "\n".join(lines) + "\n"


NOTE_SCRIPTS = ("generate_preference_data", "train_reward_model", "active_data_selection")  # what plan_notes reads


def composed_configs(steps: list[Step], scripts: tuple[str, ...] | None = None) -> list[DictConfig | None]:
    """Each step's config as its script would compose it (None: a step without a Hydra config, or of a script
    outside `scripts` when given)."""
    hydra_steps = [step for step in steps if step.config_name is not None and (scripts is None or step.script in scripts)]
    composed = dict(zip([step.name for step in hydra_steps], compose_configs(hydra_steps), strict=True))
    return [composed.get(step.name) for step in steps]


def plan_notes(steps: list[Step], profile: ProfileConfig, composed: list[DictConfig | None]) -> list[str]:
    """What the named configs decide and the command lines don't show: the data each domain's pairs come from,
    the training order, and the active-learning pool (from each step's composed config)."""
    notes = [f"pairs of {domain}: {profile.pair_data[domain]} (given; not generated, no best-of-n)"
             for domain in profile.domains if domain in profile.pair_data]
    planned = [step for step in steps if step.script in NOTE_SCRIPTS]
    configs = {step.name: cfg for step, cfg in zip(steps, composed, strict=True)}
    for step in planned:
        if step.script == "generate_preference_data":
            data = configs[step.name].dataset
            sources = ", ".join(f"{d.name_or_path} ({d.split})" for d in data.datasets)
            eval_split = (f"{data.eval_pairs} eval pairs" if data.eval_pairs is not None
                          else f"eval problems: {data.eval_size if data.eval_size is not None else data.eval_fraction}")
            notes.append(f"problems of {step.name.split('/', 1)[1]}: {sources}; {eval_split}")
    training = [configs[step.name].train.group_by_length for step in planned if step.script == "train_reward_model"]
    if training:
        notes.append(f"training order: {training.count(False)} of {len(training)} training steps shuffled, "
                     f"{training.count(True)} length-grouped (train.group_by_length)")
    pools = {configs[step.name].dataset.pool_size for step in planned
             if step.script == "active_data_selection" and step.config_name == "initial"}
    if pools:
        notes.append("active-learning pool (round 1): " + ", ".join(
            "the whole train split" if size is None else f"the ground truth's {size} training pairs"
            for size in sorted(pools, key=lambda v: -1 if v is None else v)))
    return notes


def critical_path(steps: list[Step], cost: dict[str, float] | None = None) -> tuple[float, list[str]]:
    """The longest chain of dependent steps (each costing `cost[name]`, default 1): its length and its steps."""
    cost = cost or {}
    names = {s.name for s in steps}
    best: dict[str, tuple[float, list[str]]] = {}
    for step in steps:  # planned order respects every step's inputs
        before = max((best[n] for n in step.needs if n in names), default=(0.0, []), key=lambda item: item[0])
        best[step.name] = (before[0] + cost.get(step.name, 1.0), [*before[1], step.name])
    return max(best.values(), default=(0.0, []), key=lambda item: item[0])


def makespan(steps: list[Step], gpu_slots: int | None, cpu_slots: int, cost: dict[str, float] | None = None) -> float:
    """How long the steps take when, as the local and Ray executors do, every step starts as soon as its inputs are
    done and a slot is free (ready steps in planned order). GPU steps take one of `gpu_slots` (None: they share the
    CPU slots), the others one of `cpu_slots`; 0 slots: no limit. Each step costs `cost[name]` (default 1)."""
    cost = cost or {}
    names = {s.name for s in steps}
    limit, busy = {"gpu": gpu_slots, "cpu": cpu_slots}, {"gpu": 0, "cpu": 0}
    pending, running, finish, now = list(steps), [], {}, 0.0
    while pending or running:
        for step in list(pending):
            pool = "gpu" if step.uses_gpu and gpu_slots is not None else "cpu"
            inputs_done = all(n in finish for n in step.needs if n in names)
            if inputs_done and (limit[pool] == 0 or busy[pool] < limit[pool]):
                pending.remove(step)
                running.append((now + cost.get(step.name, 1.0), step.name, pool))
                busy[pool] += 1
        now = min(end for end, _, _ in running)
        for end, name, pool in [item for item in running if item[0] == now]:
            running.remove((end, name, pool))
            finish[name] = end
            busy[pool] -= 1
    return now
