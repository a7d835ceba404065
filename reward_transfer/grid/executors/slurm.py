"""Each step an sbatch job, submitted through submitit, the graph's edges as `afterok` dependencies: Slurm starts a
step once the jobs it needs ended well, and cancels it (`--kill-on-invalid-dep=yes`) when one failed.

Submission is resumable: `<run>/.grid/slurm_jobs.json` records each step's job. A rerun skips what is finished,
follows what is still queued or running (its job id becomes its dependents' dependency), and submits the rest.
`executor.wait=true` follows the jobs to the end (one line per finished step; Ctrl-C stops following, not the jobs);
`false` submits and exits. Each job runs the step as every executor does (`running.run_step`): a job whose step
turns out finished when it starts is done at once.
"""

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from reward_transfer.errors import UserError
from reward_transfer.grid.executors.base import BLOCKED, FAILED, INTERRUPTED_EXIT, Console, Executor, finish
from reward_transfer.grid.running import Launch, StepOutcome, run_step
from reward_transfer.grid.state import step_status
from reward_transfer.grid.step import Step
from reward_transfer.storage import atomic_write_json

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE"}


class StepFailed(RuntimeError):
    """A step's job failed: its exit makes Slurm cancel the jobs that need it."""


def slurm_step(step: Step, graph: dict[str, Step], run: str, launch: Launch, overwrite: bool, cwd: str) -> StepOutcome:
    """The body of a step's job (on the node): `run_step`, raising when the step failed."""
    os.chdir(cwd)  # relative paths of the command line mean what they meant where it was submitted
    outcome = run_step(step, graph, Path(run), launch, overwrite)
    outcome.where = f"Slurm job {os.environ.get('SLURM_JOB_ID', '?')} on {os.environ.get('SLURMD_NODENAME', '?')}"
    if outcome.status == FAILED:
        raise StepFailed(outcome.error)
    return outcome


def record_path(run: Path) -> Path:
    return Path(run) / ".grid" / "slurm_jobs.json"


def read_record(run: Path) -> dict[str, str]:
    """step → the job id of its latest submission."""
    import json

    try:
        return json.loads(record_path(run).read_text())
    except (OSError, ValueError):
        return {}


def job_states(job_ids: list[str]) -> dict[str, str]:
    """job id → Slurm state of the jobs Slurm still knows (ended ones for MinJobAge), from squeue."""
    if not job_ids:
        return {}
    try:
        listing = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(job_ids)],
                                 capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise UserError(f"executor=slurm: cannot ask Slurm for its jobs (squeue: {err})") from err
    return dict(line.split()[:2] for line in listing.splitlines() if len(line.split()) >= 2)


def live_jobs(run: Path) -> dict[str, str]:
    """The steps of this run folder whose jobs are still queued or running: step → job id."""
    record = read_record(run)
    if not record:
        return {}
    states = job_states(list(record.values()))
    return {step: job for step, job in record.items() if job in states and states[job] not in ENDED}


class SlurmExecutor(Executor):
    def slots(self) -> tuple[int | None, int]:
        return 0, 0  # the cluster's width: as wide as the graph allows

    def _parameters(self, step: Step, dependencies: list[str]) -> dict:
        config = self.config
        extra = {"kill-on-invalid-dep": "yes", **dict(config.sbatch)}
        if dependencies:
            extra["dependency"] = "afterok:" + ":".join(dependencies)
        gpus = config.gpus_per_step if step.uses_gpu else 0
        return {"name": step.slug, "timeout_min": config.time_min, "slurm_partition": config.partition,
                "slurm_account": config.account, "cpus_per_task": config.cpus_per_step, "mem_gb": config.mem_gb,
                **({"gpus_per_node": gpus} if gpus else {}), "slurm_use_srun": False,
                "slurm_additional_parameters": extra}

    def _submit(self, step: Step, dependencies: list[str], graph: dict[str, Step], run: Path, overwrite: bool) -> str:
        import submitit

        executor = submitit.AutoExecutor(folder=Path(run) / ".grid" / "slurm" / "%j", cluster="slurm")
        executor.update_parameters(**{k: v for k, v in self._parameters(step, dependencies).items() if v is not None})
        launch = replace(self.launch(), in_process=not self.profile.launcher)
        return executor.submit(slurm_step, step, graph, str(run), launch, overwrite, os.getcwd()).job_id

    def submit_all(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool
                   ) -> tuple[dict[str, str], dict[str, StepOutcome]]:
        """Submit what is neither finished nor queued; returns (step → job id followed, step → outcome known now)."""
        live, jobs, known = live_jobs(run), {}, {}
        for step in steps:
            upstream = [jobs[need] for need in step.needs if need in jobs]
            if not upstream and step_status(run, step, graph) == "done":
                known[step.name] = StepOutcome(step.name, "skipped")
            elif step.name in live:
                jobs[step.name] = live[step.name]
            else:
                jobs[step.name] = self._submit(step, upstream, graph, run, overwrite)
        atomic_write_json(record_path(run), {**read_record(run), **jobs})
        return jobs, known

    def run(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool) -> list[StepOutcome]:
        jobs, outcomes = self.submit_all(steps, graph, run, overwrite)
        queued = sum(job in live_jobs(run).values() for job in jobs.values())
        print(f"executor=slurm: {len(jobs)} jobs followed ({queued} still queued or running from before), "
              f"{len(outcomes)} steps already done; record: {record_path(run)}", flush=True)
        if not self.config.wait:
            for name, job in jobs.items():
                print(f"  {job}  {name}", flush=True)
            return list(outcomes.values())
        console = Console(steps, f"reproduce {self.profile.name}: following {len(jobs)} Slurm jobs (logs in {run})")
        for outcome in outcomes.values():
            console.report(outcome)
        try:
            self._follow(jobs, outcomes, run, console)
        except KeyboardInterrupt:
            console.close()
            print(f"stopped following; the jobs go on in Slurm ({', '.join(jobs.values())}): rerun the same command to "
                  "follow them again", flush=True)
            raise SystemExit(INTERRUPTED_EXIT) from None
        console.close()
        return finish([outcomes[s.name] for s in steps], run)

    def _follow(self, jobs: dict[str, str], outcomes: dict[str, StepOutcome], run: Path, console: Console) -> None:
        """Poll Slurm until every job ended; report each as it does."""
        waiting = dict(jobs)
        while waiting:
            states = job_states(list(waiting.values()))
            for name, job in list(waiting.items()):
                state = states.get(job, "GONE")
                if state in ENDED or state == "GONE":
                    outcomes[name] = _ended(name, job, state, run)
                    console.report(outcomes[name])
                    del waiting[name]
            if waiting:
                time.sleep(self.config.poll_s)


def _ended(name: str, job: str, state: str, run: Path) -> StepOutcome:
    """The outcome of an ended job: its step's own (submitit's result), or why it has none."""
    import submitit

    handle = submitit.SlurmJob(folder=Path(run) / ".grid" / "slurm" / "%j", job_id=job)
    if handle.paths.result_pickle.exists():
        try:
            return handle.result()
        except Exception as err:  # the job's failure, pickled by submitit with its traceback: keep our message
            message = str(err).rsplit(f"{StepFailed.__name__}: ", 1)[-1].strip()
            return StepOutcome(name, FAILED, error=message or f"step {name}: Slurm job {job} failed",
                               where=f"Slurm job {job}")
    if state == "CANCELLED":
        return StepOutcome(name, BLOCKED, where=f"Slurm job {job}")
    return StepOutcome(name, FAILED, error=f"step {name}: Slurm job {job} ended {state} without a result "
                                           f"(its log: {handle.paths.stderr})", where=f"Slurm job {job}")
