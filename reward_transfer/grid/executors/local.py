"""Steps side by side on this machine, each its own command line, as soon as the steps it needs are finished.

On CPUs up to `max_parallel` at once. On GPUs each of `gpus` takes up to `steps_per_gpu` steps at once (a LoRA
training of a 7B model uses a fraction of an H200's memory), each step seeing only its GPU (CUDA_VISIBLE_DEVICES);
steps that need no GPU (merging, the report) run beside them within `max_parallel`. A failed step stops only the
steps that need it; the rest finish, and the end lists both.
"""

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from reward_transfer.errors import UserError
from reward_transfer.grid.executors.base import BLOCKED, Console, Executor, blocked_by, finish, ready
from reward_transfer.grid.running import StepOutcome, run_step, terminate_commands
from reward_transfer.grid.step import Step


class GpuSlots:
    """Which GPU a step may use: the least loaded of `gpus` with a free slot (None: none free)."""

    def __init__(self, gpus: list[int], per_gpu: int):
        self.load = dict.fromkeys(gpus, 0)
        self.per_gpu = per_gpu
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            free = [gpu for gpu, used in self.load.items() if used < self.per_gpu]
            if not free:
                return None
            gpu = min(free, key=lambda g: self.load[g])
            self.load[gpu] += 1
            return gpu

    def give(self, gpu: int) -> None:
        with self.lock:
            self.load[gpu] -= 1


class LocalExecutor(Executor):
    def __init__(self, config, profile):
        super().__init__(config, profile)
        if config.max_parallel < 1 or config.steps_per_gpu < 1:
            raise UserError(f"executor.max_parallel and executor.steps_per_gpu must be at least 1, got "
                            f"{config.max_parallel}, {config.steps_per_gpu}")

    def slots(self) -> tuple[int | None, int]:
        gpus = len(self.config.gpus) * self.config.steps_per_gpu
        return (gpus or None), self.config.max_parallel

    def _placement(self, step: Step, gpus: GpuSlots, cpu_running: int) -> tuple[bool, int | None]:
        """(may start now, its GPU): a GPU step takes a GPU slot when there are GPUs, else a CPU slot."""
        if step.uses_gpu and gpus.load:
            gpu = gpus.take()
            return gpu is not None, gpu
        return cpu_running < self.config.max_parallel, None

    def run(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool) -> list[StepOutcome]:
        gpus = GpuSlots(list(self.config.gpus), self.config.steps_per_gpu)
        width = len(self.config.gpus) * self.config.steps_per_gpu + self.config.max_parallel
        console = Console(steps, f"reproduce {self.profile.name}: {len(steps)} steps, local executor (up to "
                                 f"{self.config.max_parallel} at once" + (f", {self.config.steps_per_gpu} per GPU "
                                 f"of {list(self.config.gpus)}" if self.config.gpus else "") + f"; logs in {run})")
        selected, outcomes = {s.name for s in steps}, {}
        pending, running = list(steps), {}  # running: future → (step, gpu)
        interrupted: list[str] = []
        with ThreadPoolExecutor(max_workers=width) as pool:
            try:
                while pending or running:
                    self._start_ready(pending, running, selected, outcomes, gpus, console, pool, graph, run, overwrite)
                    if running:
                        self._collect(running, outcomes, gpus, console)
            except KeyboardInterrupt:
                interrupted = [step.name for step, _ in running.values()] or ["(between steps)"]
                terminate_commands()  # the steps run in sessions of their own: Ctrl-C reaches them only so
        console.close()
        return finish([outcomes[s.name] for s in steps if s.name in outcomes], run, interrupted)

    def _start_ready(self, pending: list[Step], running: dict, selected: set[str], outcomes: dict[str, StepOutcome],
                     gpus: GpuSlots, console: Console, pool: ThreadPoolExecutor, graph: dict[str, Step], run: Path,
                     overwrite: bool) -> None:
        """Start every pending step whose inputs are finished and for which a slot is free; block the rest whose
        inputs failed."""
        for step in [s for s in pending if ready(s, selected, outcomes)]:
            if blocked_by(step, outcomes):
                pending.remove(step)
                outcomes[step.name] = StepOutcome(step.name, BLOCKED)
                console.report(outcomes[step.name])
                continue
            may_start, gpu = self._placement(step, gpus, sum(g is None for _, g in running.values()))
            if may_start:
                pending.remove(step)
                env = {"CUDA_VISIBLE_DEVICES": str(gpu), **self.gpu_share_env()} if gpu is not None else {}
                running[pool.submit(run_step, step, graph, run, self.launch(env), overwrite)] = (step, gpu)

    @staticmethod
    def _collect(running: dict[Future, tuple[Step, int | None]], outcomes: dict[str, StepOutcome], gpus: GpuSlots,
                 console: Console) -> None:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            step, gpu = running.pop(future)
            outcome = future.result()
            if gpu is not None:
                gpus.give(gpu)
                outcome.where = f"GPU {gpu}"
            outcomes[step.name] = outcome
            console.report(outcome)
