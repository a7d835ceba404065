"""Executors: what runs the grid's steps. One name → one class (`configs/reproduce/executor/<name>.yaml`).

Every executor only runs steps: the plan, the rerun rule (`running.run_step`) and the step identities are the same
under all of them, so switching executors never redoes finished work.

    inprocess   one after another in this process (the tiny default: no import per step)
    subprocess  one after another, each its own command line (the paper default)
    local       side by side on this machine: up to max_parallel at once, or steps_per_gpu per GPU of `gpus`
    ray         each step a Ray task with its GPU/CPU request, dependencies as the graph's edges
    slurm       each step an sbatch job (submitit), dependencies as afterok; resumable submission
"""

from reward_transfer.errors import UserError
from reward_transfer.grid.executors.base import Executor
from reward_transfer.grid.executors.local import LocalExecutor
from reward_transfer.grid.executors.ray_cluster import RayExecutor
from reward_transfer.grid.executors.sequential import InProcessExecutor, SubprocessExecutor
from reward_transfer.grid.executors.slurm import SlurmExecutor
from reward_transfer.grid.profile import ExecutorConfig, ProfileConfig

EXECUTORS: dict[str, type[Executor]] = {"inprocess": InProcessExecutor, "subprocess": SubprocessExecutor,
                                        "local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}


def get_executor(config: ExecutorConfig, profile: ProfileConfig) -> Executor:
    """The executor `config.name` names; an unknown one is a one-line error listing the known ones."""
    if config.name not in EXECUTORS:
        raise UserError(f"executor: unknown executor '{config.name}' (known: {', '.join(EXECUTORS)})")
    return EXECUTORS[config.name](config, profile)
