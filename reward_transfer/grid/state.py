"""What a run folder knows about its steps: markers of finished steps, content fingerprints, staleness, the lock.

A step is what it produces: its script, config and overrides (`Step.identity`), not the launcher or the executor.
A finished step leaves `<run>/.steps/<step>.done` (written by whoever ran the step, once: one writer per file) with
its identity and the content fingerprints of its outputs and of its inputs. A step is skipped when all three are
unchanged; it is redone ("stale") only when an input's content changed: a hash of each stage's own record of what
made an output, never a file time, so an identical input rebuilt (a deleted merged model merged again) changes
nothing downstream.
"""

import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from reward_transfer.errors import UserError
from reward_transfer.grid.step import Step
from reward_transfer.storage import atomic_write_json

# The record each stage keeps of what made an output (in the output's folder), and the part of it that is content:
# an output rebuilt from the same settings and inputs has the same record, whenever it was written.
CONTENT_RECORDS = (
    ("run_settings.json", lambda record: record),  # training, SFT, evaluation, merging
    ("generation_manifest.json", lambda record: [record["config"], record["input_fingerprint"]]),
    ("al_state.json", lambda record: record),  # the selection state: every round's settings and picks
)
STATUSES = ("done", "new", "changed", "stale")


def content_fingerprint(output: Path) -> str | None:
    """What an output is, not when it was written: a hash of its stage's record of the settings and inputs that made
    it (the file itself when it has none, e.g. the tiny models' COMPLETE); None when it is missing."""
    output = Path(output)
    if not output.exists():
        return None
    for folder in ([output] if output.is_dir() else []) + [output.parent]:
        for name, content in CONTENT_RECORDS:
            if (folder / name).is_file():
                payload = json.dumps(content(json.loads((folder / name).read_text())), sort_keys=True, default=str)
                return hashlib.sha256(payload.encode()).hexdigest()[:16]
    return hashlib.sha256(output.read_bytes()).hexdigest()[:16] if output.is_file() else None


def output_fingerprints(step: Step) -> list[str | None]:
    """The content fingerprint of each declared output (None: missing)."""
    return [content_fingerprint(Path(output)) for output in step.outputs]


def input_fingerprints(step: Step, graph: dict[str, Step]) -> dict[str, list[str | None]]:
    """The content fingerprints of what each step this one needs produced, as they are now."""
    return {need: output_fingerprints(graph[need]) for need in step.needs if need in graph}


def marker_path(run: Path, step_name: str) -> Path:
    return Path(run) / ".steps" / f"{step_name.replace('/', '__')}.done"


def read_marker(run: Path, step_name: str) -> dict | None:
    try:
        return json.loads(marker_path(run, step_name).read_text())
    except (OSError, ValueError):
        return None


def write_marker(run: Path, step: Step, graph: dict[str, Step], command: str, seconds: float) -> None:
    """Record the finished step (by the one process that ran it)."""
    atomic_write_json(marker_path(run, step.name), {
        "identity": step.identity(), "command": command, "outputs": output_fingerprints(step),
        "inputs": input_fingerprints(step, graph), "seconds": round(seconds, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def step_status(run: Path, step: Step, graph: dict[str, Step]) -> str:
    """done (skip) | new (run) | changed (run: its settings changed) | stale (redo: an input's content changed)."""
    marker = read_marker(run, step.name)
    if step.always or marker is None:
        return "new"
    if marker.get("identity") != step.identity():
        return "changed"
    fingerprints = output_fingerprints(step)
    if None in fingerprints or fingerprints != marker.get("outputs"):
        return "new"  # outputs missing or rewritten outside the grid: the stage decides (it keeps the same run)
    recorded = marker.get("inputs", {})
    if any(recorded.get(need) != now for need, now in input_fingerprints(step, graph).items()):
        return "stale"
    return "done"


def check_inputs(steps: list[Step], run: Path) -> None:
    """Refuse, before running anything, a selection whose steps read what no selected or finished step made."""
    selected = {s.name for s in steps}
    for step in [s for s in steps if not s.always]:  # the report reads whatever is there
        missing = [n for n in step.needs if n not in selected and read_marker(run, n) is None]
        if missing:
            raise UserError(f"step {step.name} needs {', '.join(missing)}, which has not run: "
                            "add it to only= (or drop it from skip=)")


class RunLock:
    """One `reproduce.py` per run folder: the second refuses in one line naming the first (host, pid, executor,
    and the job ids of a queued cluster submission)."""

    def __init__(self, run: Path):
        self.path = Path(run) / ".grid" / "lock"
        self.info = self.path.with_suffix(".json")
        self._handle = None

    def holder(self) -> dict:
        try:
            return json.loads(self.info.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self, executor: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            first = self.holder()
            raise UserError(f"{self.path.parent.parent} is being run by another reproduce.py (host {first.get('host')}, "
                            f"pid {first.get('pid')}, executor {first.get('executor')}, since {first.get('since')}); "
                            "wait for it or stop it first") from None
        self._handle = handle
        atomic_write_json(self.info, {"host": socket.gethostname(), "pid": os.getpid(), "executor": executor,
                                      "since": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def release(self) -> None:
        if self._handle is not None:
            self.info.unlink(missing_ok=True)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
