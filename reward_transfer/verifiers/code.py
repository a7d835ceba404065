"""Code verifier: run model-written Python against APPS test cases in a sandbox and count passed tests.

The program is hostile. It runs in warm forked workers (`_sandbox_zygote.py`) under private mount, network
and pid namespaces, as an unprivileged uid with resource limits; it only ever returns raw stdout or a JSON
value, and this trusted process compares them with the expected outputs, which the sandbox never sees.
Threat model and measured speed: docs/code_sandbox.md.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reward_transfer.errors import UserError
from reward_transfer.verifiers import exact_json

logger = logging.getLogger(__name__)

ZYGOTE_SCRIPT = Path(__file__).with_name("_sandbox_zygote.py")
STATUSES = ("passed", "wrong", "error", "timeout", "memory")
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
# Each test's directory is a tmpfs of this size: tmpfs pages are memory the address-space limit doesn't count.
MAX_DIR_BYTES = 16 * 1024 * 1024
MAX_DETAIL_CHARS = 300  # what is kept of a program's own error text per test (the grader's memory is bounded)
MAX_PROCESSES = 8
# APPS compares floats with numpy.allclose defaults: |actual - expected| <= atol + rtol * |expected|.
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-8
# Sandboxed programs run as uids from this range, one per worker, never shared with any real account.
_UID_RANGE = (1_000_000_000, 2_000_000_000)
_SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
                "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "python3", "py", "py3", ""}


@dataclass
class TestResult:
    """Outcome of one program on one problem's tests; `statuses[i]` is one of STATUSES."""

    passed: int
    total: int
    statuses: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    processes: int = 0  # test processes started (none for a program that does not compile)

    __test__ = False  # not a pytest test class

    @property
    def score(self) -> float:
        """Share of tests passed (0.0 when the problem has no tests)."""
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


def extract_code(response: str) -> str:
    """The Python program in a model response: the longest fenced block tagged python (or untagged).

    The longest rather than the last, because models often end with a short usage example after the
    solution. Blocks tagged with another language are ignored; without any usable fence the whole text
    is returned. An unclosed final fence (truncated generation) still counts.
    """
    blocks = [body for tag, body in _FENCE.findall(response) if tag.lower() in _PYTHON_TAGS]
    if not blocks:
        return response.strip()
    return max(blocks, key=lambda body: len(body.strip())).strip("\n")


# ---------------------------------------------------------------- test specs and comparison

@dataclass(frozen=True)
class _Problem:
    fn_name: str | None
    inputs: list[str]
    expected: list[Any]


def _parse_tests(tests: dict | str) -> _Problem:
    """APPS `input_output` (dict or JSON text, parsed with json only) → inputs and expected outputs."""
    if isinstance(tests, str):
        try:
            tests = exact_json.loads(tests)
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
            raise UserError(f"tests: not valid JSON ({err.__class__.__name__}: {str(err)[:120]})") from err
    if not isinstance(tests, dict) or not isinstance(tests.get("inputs"), list) \
            or not isinstance(tests.get("outputs"), list):
        raise UserError("tests: expected an object with list fields 'inputs' and 'outputs'")
    inputs, outputs = tests["inputs"], tests["outputs"]
    if len(inputs) != len(outputs):
        raise UserError(f"tests: {len(inputs)} inputs but {len(outputs)} outputs")
    fn_name = tests.get("fn_name") or None
    if fn_name is not None and not isinstance(fn_name, str):
        raise UserError("tests: 'fn_name' must be a string")
    if fn_name is None:
        return _Problem(None, [_as_text(value) for value in inputs], [_as_text(value) for value in outputs])
    return _Problem(fn_name, [exact_json.dumps(value) for value in inputs], list(outputs))


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(line) for line in value)
    return str(value)


def _float_close(actual: float, expected: float) -> bool:
    return math.isfinite(actual) and math.isfinite(expected) and \
        abs(actual - expected) <= FLOAT_ATOL + FLOAT_RTOL * abs(expected)


def _tokens_match(actual: str, expected: str) -> bool:
    """Integer and word tokens must be identical; tokens written as decimals may differ within tolerance."""
    if actual == expected:
        return True
    if not any(marker in token for token in (actual, expected) for marker in ".eE"):
        return False
    try:
        return _float_close(float(actual), float(expected))
    except ValueError:
        return False


def stdout_matches(actual: str, expected: str) -> bool:
    """APPS stdin grading: same whitespace-separated tokens (any spacing or line breaks), floats within tolerance."""
    actual_tokens, expected_tokens = actual.split(), expected.split()
    return len(actual_tokens) == len(expected_tokens) and all(
        _tokens_match(a, e) for a, e in zip(actual_tokens, expected_tokens, strict=True))


def _values_equal(actual: Any, expected: Any) -> bool:
    """Equality of two plain JSON values; floats within tolerance, bools only equal bools."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, exact_json.LargeInt) or isinstance(expected, exact_json.LargeInt):
        return (exact_json.is_integer(actual) and exact_json.is_integer(expected)
                and exact_json.integer_text(actual) == exact_json.integer_text(expected))
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        if isinstance(actual, int) and isinstance(expected, int):
            return actual == expected
        return actual == expected or _float_close(float(actual), float(expected))
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(
            _values_equal(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(_values_equal(actual[k], expected[k]) for k in actual)
    return type(actual) is type(expected) and actual == expected


def value_matches(actual: Any, expected: Any) -> bool:
    """Call-based grading: equal to the expected value, or to its only element when APPS wrapped it in a list."""
    if _values_equal(actual, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _values_equal(actual, expected[0])


def _grade(run: dict, expected: Any, call_based: bool) -> tuple[str, str]:
    """Status and a short reason for one test, from what the sandbox observed."""
    if run["timed_out"]:
        return "timeout", "wall-clock limit"
    if run["truncated"]:
        return "wrong", "output limit exceeded"
    try:
        report = exact_json.loads(run["report"]) if run["report"] else {}
    except (ValueError, RecursionError):
        report = {}
    if not isinstance(report, dict):
        report = {}
    if report.get("status") == "memory":
        return "memory", "MemoryError"
    exit_code = run["exit_code"]
    if exit_code != 0:
        if exit_code in (-9, 137) and run["cpu_s"] >= run.get("cpu_limit_s", math.inf) - 0.1:
            return "timeout", "CPU-time limit"
        return "error", str(report.get("error") or f"exit code {exit_code}")
    if call_based:
        if report.get("status") != "ok" or "value" not in report:
            return "error", str(report.get("error") or "no return value")
        return ("passed", "") if value_matches(report["value"], expected) else ("wrong", "")
    return ("passed", "") if stdout_matches(run["stdout"], expected) else ("wrong", "")


def _score(runs: list[dict], problem: _Problem, cpu_limit_s: float) -> TestResult:
    statuses, details = [], []
    for run, expected in zip(runs, problem.expected, strict=True):
        status, detail = _grade({**run, "cpu_limit_s": cpu_limit_s}, expected, problem.fn_name is not None)
        statuses.append(status)
        details.append(detail[:MAX_DETAIL_CHARS])
    return TestResult(statuses.count("passed"), len(statuses), statuses, details,
                      sum(run.get("started", True) for run in runs))


def _all_failed(problem: _Problem, detail: str) -> TestResult:
    total = len(problem.inputs)
    return TestResult(0, total, ["error"] * total, [detail] * total)


# ---------------------------------------------------------------- the worker processes

class SandboxError(RuntimeError):
    """A sandbox worker failed (not the program under test)."""


def _directories_to_hide() -> list[str]:
    """Where expected outputs, credentials or other users' files may live: covered by empty tmpfs mounts."""
    candidates = [Path.home(), Path.cwd(), Path(__file__).resolve().parents[2], Path(tempfile.gettempdir()),
                  "/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/root", "/media", "/srv"]
    candidates += [os.environ[name] for name in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE",
                                                 "TRANSFORMERS_CACHE", "XDG_CACHE_HOME") if name in os.environ]
    return list(dict.fromkeys(str(path) for path in candidates))


class _Worker:
    """One fork server; runs one program at a time. Restarted when it dies or stops answering."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.process: subprocess.Popen | None = None
        self.workdir = ""
        self.features: dict = {}
        self._start()

    def _start(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="rt-sandbox-")
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(ZYGOTE_SCRIPT), self.workdir, str(self.uid), str(MAX_PROCESSES),
             json.dumps(_directories_to_hide())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_SANDBOX_ENV,
            cwd=self.workdir, start_new_session=True)
        self.features = self._receive(timeout_s=60.0)["features"]

    def run(self, request: dict, timeout_s: float) -> list[dict]:
        assert self.process is not None and self.process.stdin is not None
        payload = json.dumps(request).encode()
        try:
            self.process.stdin.write(struct.pack(">I", len(payload)) + payload)
            self.process.stdin.flush()
            results = self._receive(timeout_s)["results"]
        except (OSError, SandboxError, ValueError, KeyError) as err:
            self.restart()
            raise SandboxError(str(err)) from err
        if len(results) != len(request["inputs"]):
            self.restart()
            raise SandboxError("sandbox worker answered the wrong number of tests")
        return results

    def _receive(self, timeout_s: float) -> dict:
        header = self._read_exactly(4, timeout_s)
        (size,) = struct.unpack(">I", header)
        return json.loads(self._read_exactly(size, timeout_s))

    def _read_exactly(self, size: int, timeout_s: float) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        chunks, received = [], 0
        while received < size:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                raise SandboxError(f"sandbox worker silent for {timeout_s:.0f}s")
            chunk = os.read(fd, min(size - received, 1 << 20))
            if not chunk:
                raise SandboxError("sandbox worker exited")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class SandboxPool:
    """Warm sandbox workers reused across calls; grows to the largest number of workers asked for."""

    def __init__(self) -> None:
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._uid_base = random.randrange(*_UID_RANGE) // 1024 * 1024

    def ensure_workers(self, count: int) -> None:
        with self._lock:
            while len(self._workers) < count:
                worker = _Worker(self._uid_base + len(self._workers))
                if not self._workers:
                    _warn_about_missing_isolation(worker.features)
                self._workers.append(worker)
                self._idle.put(worker)

    @property
    def features(self) -> dict:
        """Protections in force (see docs/code_sandbox.md); starts a worker if none runs yet."""
        self.ensure_workers(1)
        return dict(self._workers[0].features)

    @property
    def uids(self) -> list[int]:
        return [worker.uid for worker in self._workers]

    def run(self, code: str, problem: _Problem, timeout_s: float, memory_mb: int) -> TestResult:
        if not problem.inputs:
            return TestResult(0, 0)
        request = {"code": code, "fn_name": problem.fn_name, "inputs": problem.inputs, "timeout_s": timeout_s,
                   "memory_mb": memory_mb, "max_output_bytes": MAX_OUTPUT_BYTES, "max_file_bytes": MAX_FILE_BYTES,
                   "dir_bytes": MAX_DIR_BYTES}
        budget = len(problem.inputs) * (timeout_s + 2.0) + 30.0
        worker = self._idle.get()
        try:
            runs = worker.run(request, budget)
        except SandboxError as err:
            logger.warning("sandbox worker failed, restarted it: %s", err)
            return _all_failed(problem, f"sandbox failure: {err}")
        finally:
            self._idle.put(worker)
        return _score(runs, problem, cpu_limit_s=math.ceil(timeout_s) + 1)

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.close()
            self._workers.clear()
            self._idle = queue.Queue()


def _warn_about_missing_isolation(features: dict) -> None:
    missing = [name for name in ("network_isolated", "readonly_fs", "pid_namespace", "separate_uid",
                                 "allowlist_fs", "ipc_namespace", "seccomp") if not features.get(name)]
    if missing:
        logger.warning("code sandbox runs without: %s (see docs/code_sandbox.md)", ", ".join(missing))


_default_pool: SandboxPool | None = None
_default_pool_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool used by run_tests / run_tests_batch (closed at exit)."""
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = SandboxPool()
        return _default_pool


def close_default_pool() -> None:
    """Stop the default pool's workers (they are restarted on the next call)."""
    global _default_pool
    with _default_pool_lock:
        if _default_pool is not None:
            _default_pool.close()
            _default_pool = None


def _forget_pool_in_child() -> None:
    global _default_pool
    _default_pool = None  # the child must not share the parent's worker pipes


atexit.register(close_default_pool)
os.register_at_fork(after_in_child=_forget_pool_in_child)


# ---------------------------------------------------------------- public entry points

def run_tests(code: str, tests: dict | str, timeout_s: float = 4.0, memory_mb: int = 1024) -> TestResult:
    """Run one program on APPS-style tests (`inputs`, `outputs`, optional `fn_name`) in the sandbox."""
    problem = _parse_tests(tests)
    pool = default_pool()
    pool.ensure_workers(1)
    return pool.run(code, problem, timeout_s, memory_mb)


def run_tests_batch(codes: Sequence[str], tests: dict | str | Sequence[dict | str], workers: int | None = None,
                    timeout_s: float = 4.0, memory_mb: int = 1024, show_progress: bool = False,
                    ) -> list[TestResult]:
    """Run many programs in parallel sandboxes; `tests` is one spec for all programs or one per program."""
    if isinstance(tests, dict | str):
        problems = [_parse_tests(tests)] * len(codes)
    else:
        if len(tests) != len(codes):
            raise UserError(f"run_tests_batch: {len(codes)} programs but {len(tests)} test specs")
        problems = []
        for index, spec in enumerate(tests):
            try:
                problems.append(_parse_tests(spec))
            except UserError as err:
                raise UserError(f"test spec {index}: {err}") from err
    workers = workers or len(os.sched_getaffinity(0))
    pool = default_pool()
    pool.ensure_workers(min(workers, max(len(codes), 1)))
    with ThreadPoolExecutor(max_workers=workers) as executor, \
            tqdm(total=len(codes), desc="sandbox", unit="prog", disable=not show_progress) as progress:
        futures = [executor.submit(pool.run, code, problem, timeout_s, memory_mb)
                   for code, problem in zip(codes, problems, strict=True)]
        results = []
        for future in futures:
            results.append(future.result())
            progress.update()
    return results
