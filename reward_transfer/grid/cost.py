"""What a grid will cost before it runs: GPU-hours per kind of step, wall-clock hours under the chosen executor,
and disk, from a throughput table (`throughput.py`) and the work each step's composed config asks for
(`step_costs.py`).

A step's GPU time is its work over the table's rate plus loading its model; its wall time adds what it does
without the GPU (labelling that generation does not overlap, merges). The grid's wall-clock is the planned
schedule of `script.makespan` over those times, and never less than the GPU time divided among the GPUs: steps
sharing a GPU overlap their loading and CPU work, not their compute.
"""

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reward_transfer.grid.profile import ExecutorConfig, ProfileConfig
from reward_transfer.grid.script import makespan
from reward_transfer.grid.step import Step
from reward_transfer.grid.step_costs import ESTIMATORS, GridContext, StepCost
from reward_transfer.grid.throughput import load_throughput


@dataclass
class GridCost:
    device: str
    executor: str
    gpus: int
    steps: list[StepCost]
    wall_hours: float
    downloads_gb: float = 0.0  # the Hugging Face cache: the profile's models and the generator
    estimated_figures: list[str] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return sum(cost.gpu_s for cost in self.steps) / 3600

    def by_kind(self) -> dict[str, dict[str, float]]:
        kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"steps": 0, "gpu_hours": 0.0, "disk_gb": 0.0})
        for cost in self.steps:
            kinds[cost.kind]["steps"] += 1
            kinds[cost.kind]["gpu_hours"] += cost.gpu_s / 3600
            kinds[cost.kind]["disk_gb"] += cost.disk_gb
        return dict(kinds)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "executor": self.executor, "gpus": self.gpus,
                "gpu_hours": round(self.gpu_hours, 2), "wall_hours": round(self.wall_hours, 2),
                "rented_gpu_hours": round(self.wall_hours * self.gpus, 2),
                "disk_gb": round(sum(c.disk_gb for c in self.steps), 1), "downloads_gb": round(self.downloads_gb, 1),
                "by_kind": self.by_kind(),
                "estimated_figures": self.estimated_figures, "steps": [asdict(c) for c in self.steps]}


def estimate_grid(steps: list[Step], configs: list[DictConfig | None], profile: ProfileConfig,
                  executor: ExecutorConfig, run: Path) -> GridCost:
    """Every step's cost and the grid's wall-clock under `executor` (configs: each step's composed config)."""
    table = load_throughput(profile.device)
    composed = {step.name: cfg for step, cfg in zip(steps, configs, strict=True) if cfg is not None}
    context = GridContext(profile, run, table, composed, {step.name: step for step in steps})
    costs = [ESTIMATORS[step.script](step, composed.get(step.name), context) for step in steps]
    gpus = max(len(executor.gpus), 1) if executor.name in ("local", "ray") else 1
    gpu_slots = gpus * executor.steps_per_gpu if executor.name in ("local", "ray") and executor.gpus else None
    cpu_slots = executor.max_parallel if executor.name in ("local", "ray") else 1
    if executor.name == "slurm":
        gpu_slots, cpu_slots = 0, 0  # a cluster: as many at once as the graph allows
    schedule = makespan(steps, gpu_slots, cpu_slots, {c.name: c.wall_s for c in costs})
    gpu_bound = sum(c.gpu_s for c in costs) / gpus if executor.name != "slurm" else 0.0
    return GridCost(profile.device, executor.name, gpus, costs, max(schedule, gpu_bound) / 3600,
                    _downloads_gb(steps, profile, table("disk_gb")), table.estimated())


def _downloads_gb(steps: list[Step], profile: ProfileConfig, disk: dict[str, float]) -> float:
    """The models the grid downloads once into the Hugging Face cache (local paths excluded)."""
    models = {profile.models.general, *profile.models.sft.values(), *(profile.sft.base.values() if profile.sft.train
                                                                      else ())}
    hub = [m for m in models if m and not Path(m).expanduser().exists() and not m.startswith((".", "/", "~"))]
    generator = any(step.script == "generate_preference_data" for step in steps)
    return len(hub) * disk["downloaded_model"] + (disk["generator"] if generator else 0.0)


def render_cost(cost: GridCost) -> str:
    """The dry run's cost lines: per kind of step and in total."""
    lines = [f"# estimated cost on {cost.device} (benchmarks/throughput/{cost.device}.json):",
             f"#   {'kind':<16}{'steps':>6}{'GPU-hours':>11}{'disk GB':>9}"]
    for kind, figures in cost.by_kind().items():
        lines.append(f"#   {kind:<16}{figures['steps']:>6}{figures['gpu_hours']:>11.2f}{figures['disk_gb']:>9.1f}")
    total = cost.to_dict()
    lines.append(f"#   {'total':<16}{len(cost.steps):>6}{total['gpu_hours']:>11.2f}{total['disk_gb']:>9.1f}"
                 f"  (+ {cost.downloads_gb:.0f} GB of downloaded models)")
    lines.append(f"# wall-clock under executor={cost.executor}: {cost.wall_hours:.1f} h on {cost.gpus} GPU(s) "
                 f"= {total['rented_gpu_hours']:.1f} GPU-hours rented")
    if cost.estimated_figures:
        lines.append(f"# {len(cost.estimated_figures)} figures of the table are estimates, not measurements "
                     f"({', '.join(cost.estimated_figures)}): `make gpu-bench` on the device measures them")
    return "\n".join(lines)
