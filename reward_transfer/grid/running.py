"""Run one step: decide from the run folder whether it is due, execute it (in this process on the composed config, or
as its command line), log its output, record it. Every executor runs steps through `run_step`, so the rerun rule
is the same under all of them: a finished step is never redone, an interrupted one is simply run again.
"""

import contextlib
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from reward_transfer.grid.state import step_status, write_marker
from reward_transfer.grid.step import Step
from reward_transfer.stages import CONFIGS, get_stage

REPO_ROOT = CONFIGS.parent
LOG_TAIL_LINES = 25
STAGE_WARNING = re.compile(r"^\s+WARNING:?\s+(?P<text>.+)$")


@dataclass
class StepOutcome:
    step: str
    status: str  # done | skipped | failed | blocked (an input failed) | interrupted
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str = ""  # failed: why, the command and the tail of its log
    note: str = ""  # e.g. "an input was redone since it ran"
    where: str = ""  # the executor's placement (GPU, Ray node, Slurm job)


@dataclass
class Launch:
    """How an executor runs a step: in this process, or as its command line (launcher, interpreter, environment)."""

    in_process: bool = False
    python: str = "python"
    launcher: str = ""
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (CUDA_VISIBLE_DEVICES, threads)


def log_path(run: Path, step: Step) -> Path:
    return Path(run) / "logs" / f"{step.slug}.log"


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """Send everything the step writes (Python, C extensions, progress bars) to `path`.

    Both levels: the file descriptors 1/2 (C code, handlers bound to the real streams) and sys.stdout/stderr
    (which need not be those descriptors, e.g. under pytest).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                yield
        finally:
            log_file.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def compose_configs(steps: list[Step]) -> list[DictConfig]:
    """The configs the steps' command lines would give their scripts (Hydra compose on the same config and
    overrides), one Hydra initialisation per script."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    composed: dict[int, DictConfig] = {}
    for script in dict.fromkeys(step.script for step in steps):
        stage = get_stage(script)
        importlib.import_module(stage.schema)
        GlobalHydra.instance().clear()  # reproduce.py's own @hydra.main instance, or a previous step's
        with initialize_config_dir(config_dir=str(stage.config_dir), version_base="1.3"):
            for index, step in enumerate(steps):
                if step.script == script:
                    composed[index] = compose(config_name=step.config_name, overrides=list(step.overrides))
    return [composed[index] for index in range(len(steps))]


@contextlib.contextmanager
def step_environment(env: dict[str, str]) -> Iterator[None]:
    """The launch's environment for a step run in this process (its torch threads included); restored afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    threads = None
    if env.get("OMP_NUM_THREADS"):
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def run_in_process(step: Step) -> None:
    """The step's stage function, in this process: on the composed config (Hydra stages) or on its arguments."""
    function = get_stage(step.script).load()
    if step.config_name is not None:
        function(compose_configs([step])[0])
    else:
        function(*step.positional, **step.args)


_COMMANDS: set[subprocess.Popen] = set()  # the step commands running now, in this process's threads
_COMMANDS_LOCK = threading.Lock()


def terminate_commands() -> None:
    """Stop every step command this process started (their process groups: accelerate's children too)."""
    with _COMMANDS_LOCK:
        for process in list(_COMMANDS):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)


def run_command(step: Step, launch: Launch, log: Path) -> int:
    """The step's command line in the repository, its output appended to the log; returns the exit code. It runs in
    a session of its own, so that stopping it stops its launcher's children too."""
    env = {**os.environ, **launch.env}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python`/`accelerate` of this venv
    with open(log, "ab") as log_file:
        process = subprocess.Popen(step.argv(launch.python, launch.launcher), cwd=REPO_ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    with _COMMANDS_LOCK:
        _COMMANDS.add(process)
    try:
        return process.wait()
    except BaseException:  # an interrupt in this thread: the step's process group goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    finally:
        with _COMMANDS_LOCK:
            _COMMANDS.discard(process)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    # Progress bars rewrite one line with carriage returns: keep only the final state of each line.
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.rstrip().splitlines()[-lines:])


def stage_warnings(path: Path) -> list[str]:
    """The warnings a stage's end-of-run summary gave (a 0-pair generation, a training that learned nothing)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [m["text"] for line in lines if (m := STAGE_WARNING.match(line.rsplit("\r", 1)[-1]))]


def _failure(step: Step, launch: Launch, log: Path, why: str) -> str:
    command = step.command(launch.python, launch.launcher)
    return (f"step {step.name} failed ({why})\n  command: {command}\n  log: {log}\n  last lines of the log:\n"
            + "\n".join(f"    {line}" for line in log_tail(log).splitlines()))


def execute(step: Step, launch: Launch, run: Path) -> str:
    """Run the step once, its output in <run>/logs/<step>.log; returns "" or why it failed (KeyboardInterrupt
    propagates)."""
    log = log_path(run, step)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {step.command(launch.python, launch.launcher)}\n")
    if launch.in_process or step.script in ("tiny", "report"):
        with step_environment(launch.env), captured_output(log):
            try:
                run_in_process(step)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # a stage's failure (or SystemExit of a one-line error) is this step's
                traceback.print_exc()
                return _failure(step, launch, log, f"{err.__class__.__name__}: {err}")
        return ""
    code = run_command(step, launch, log)
    return _failure(step, launch, log, f"exit code {code}") if code else ""


def run_step(step: Step, graph: dict[str, Step], run: Path, launch: Launch, overwrite: bool = False) -> StepOutcome:
    """Skip the step if done; else run it (replacing its output when an input changed, or when its settings changed
    and `overwrite`), then record it. Never raises for a failing step: the outcome says so."""
    status = step_status(run, step, graph)
    if status == "done":
        return StepOutcome(step.name, "skipped")
    replace = status == "stale" or (status == "changed" and overwrite)
    launched = step.replacing() if replace else step
    started = time.perf_counter()
    error = execute(launched, launch, run)
    seconds = time.perf_counter() - started
    note = "an input's content changed since it ran: redone" if status == "stale" else ""
    if error:
        return StepOutcome(step.name, "failed", seconds, error=error, note=note)
    write_marker(run, step, graph, launched.command(launch.python, launch.launcher), seconds)
    return StepOutcome(step.name, "done", seconds, stage_warnings(log_path(run, step)), note=note)
