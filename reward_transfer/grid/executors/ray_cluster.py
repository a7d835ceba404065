"""Each step a Ray task with its resource request; the graph's edges are the tasks' arguments, so Ray starts a step
only once the steps it needs are done (on a local Ray, or on a cluster it joins).

A GPU step asks for 1/steps_per_gpu of a GPU (Ray sets its CUDA_VISIBLE_DEVICES) and runs as its command line; any
other step asks for one CPU. Without a launcher and without a GPU (the tiny profile), a step runs its stage function
in the Ray worker itself, which stays warm between steps. A step whose input failed is not run ("blocked").
"""

import os
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

from reward_transfer.errors import UserError
from reward_transfer.grid.executors.base import BLOCKED, FAILED, Console, Executor, finish
from reward_transfer.grid.running import Launch, StepOutcome, run_step
from reward_transfer.grid.step import Step


def ray_step(step: Step, graph: dict[str, Step], run: str, launch: Launch, overwrite: bool, cwd: str,
             *upstream: StepOutcome) -> StepOutcome:
    """The body of a step's Ray task (in a Ray worker): blocked when an input failed, else `run_step`."""
    import ray

    if any(outcome.status in (FAILED, BLOCKED) for outcome in upstream):
        return StepOutcome(step.name, BLOCKED)
    os.chdir(cwd)  # relative paths of the command line mean what they meant to the driver
    outcome = run_step(step, graph, Path(run), launch, overwrite)
    gpus = ray.get_gpu_ids()
    outcome.where = f"Ray node {ray.get_runtime_context().get_node_id()[:8]}" + (f", GPU {gpus}" if gpus else "")
    return outcome


class RayExecutor(Executor):
    def __init__(self, config, profile):
        super().__init__(config, profile)
        if config.steps_per_gpu < 1:
            raise UserError(f"executor.steps_per_gpu must be at least 1, got {config.steps_per_gpu}")

    def slots(self) -> tuple[int | None, int]:
        if self.config.address is not None:
            return 0, 0  # a cluster: as wide as the graph allows
        gpus = len(self.config.gpus) * self.config.steps_per_gpu
        return (gpus or None), self.config.num_cpus or os.cpu_count() or 1

    def _options(self, step: Step) -> dict:
        if step.uses_gpu and (self.config.gpus or self.config.address is not None):
            return {"num_gpus": 1 / self.config.steps_per_gpu, "num_cpus": 1}
        return {"num_cpus": 1}

    def _launch(self, step: Step) -> Launch:
        on_gpu = "num_gpus" in self._options(step)
        return replace(self.launch(self.gpu_share_env() if on_gpu else {}), in_process=not self.profile.launcher
                       and not on_gpu)

    def _start(self) -> bool:
        """Join the cluster `address` names, or start a local Ray; True when this process started it."""
        import ray

        if ray.is_initialized():
            return False
        local = self.config.address is None
        env = {"OMP_NUM_THREADS": str(self.profile.cpu_threads)} if self.profile.cpu_threads else {}
        # Ray numbers a local node's GPUs by the CUDA_VISIBLE_DEVICES its raylet starts with (else 0, 1, …): so
        # that executor.gpus=[2,3] gives steps GPUs 2 and 3, the raylet inherits them.
        visible = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.config.gpus))} if local and self.config.gpus else {}
        with patch.dict(os.environ, visible):  # set for ray.init only
            ray.init(address=self.config.address, num_cpus=self.config.num_cpus if local else None,
                     num_gpus=len(self.config.gpus) if local else None, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None)
        return True

    def run(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool) -> list[StepOutcome]:
        import ray

        started_here = self._start()
        console = Console(steps, f"reproduce {self.profile.name}: {len(steps)} steps, Ray "
                                 f"({self.config.address or 'local'}; logs in {run})")
        task = ray.remote(max_retries=0)(ray_step)
        refs, outcomes = {}, {}
        try:
            for step in steps:  # the planned order: every step's inputs are submitted before it
                upstream = [refs[need] for need in step.needs if need in refs]
                refs[step.name] = task.options(name=step.slug, **self._options(step)).remote(
                    step, graph, str(run), self._launch(step), overwrite, os.getcwd(), *upstream)
            waiting = {ref: name for name, ref in refs.items()}
            while waiting:
                done, _ = ray.wait(list(waiting), num_returns=1)
                outcome = ray.get(done[0])
                outcomes[waiting.pop(done[0])] = outcome
                console.report(outcome)
        except KeyboardInterrupt:
            for ref in refs.values():
                ray.cancel(ref, force=True)
            console.close()
            return finish(list(outcomes.values()), run, interrupted=[n for n in refs if n not in outcomes])
        finally:
            if started_here:
                ray.shutdown()
        console.close()
        return finish([outcomes[s.name] for s in steps], run)
