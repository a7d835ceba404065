"""Math answer checker: is the last `\\boxed{}` answer of a model response equal to the reference answer?

HF math-verify (latex2sympy2_extended + sympy) does the mathematics; this module adds what it lacks for
NuminaMath/MATH labels (balanced-brace extraction of the last box, multiple-choice letters, percentages
as fractions, degrees and spelled-out units, digit grouping) and a time limit that always holds: every
sympy comparison runs in a warm worker process that is killed and replaced when it overruns.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")

# --------------------------------------------------------------------------------------------------
# Extraction and string normalisation (cheap, pure Python, run in the calling process)
# --------------------------------------------------------------------------------------------------


# Between boxes that form one answer: punctuation, "and"/"or", and a variable name before the next box.
_BOX_SEPARATOR = re.compile(r"^[\s$,;.]*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad)[\s$,;]*)?"
                            r"(?:[A-Za-z](?:_\{?\w+\}?)?\s*=\s*)?$")


def extract_answer(response: str) -> str | None:
    """Content of the LAST `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), braces balanced; else None.

    Boxes written side by side as one answer (`\\boxed{3}, \\boxed{5}`, `\\boxed{3} and \\boxed{5}`) are joined
    as a list (`3, 5`); a box separated from the last one by any other text is not part of the answer.
    """
    if not isinstance(response, str):
        return None
    matches = list(_BOX_COMMAND.finditer(response))
    if not matches:
        return None
    # An unbalanced last box is a truncated answer: an earlier box is not the final answer either.
    contents = []
    following_start = None
    for match in reversed(matches):
        content, end = _box_content(response, match.end())
        if content is None:
            if not contents:
                return None
            break
        if following_start is not None and not _BOX_SEPARATOR.match(response[end:following_start]):
            break
        contents.append(content.strip())
        following_start = match.start()
    return ", ".join(reversed(contents))


def _box_content(text: str, start: int) -> tuple[str | None, int]:
    """The argument of a box command whose name ends at `start` (`{...}` balanced, or `\\boxed 5` style) and
    the index just past it; (None, start) when there is none."""
    position = start
    while position < len(text) and text[position] in " \t":
        position += 1
    if position < len(text) and text[position] == "{":
        depth = 0
        for index in range(position, len(text)):
            char = text[index]
            if char == "\\":
                continue
            if char == "{" and text[index - 1] != "\\":
                depth += 1
            elif char == "}" and text[index - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[position + 1 : index], index + 1
        return None, start
    if position > start:
        bare = re.match(r"[^\s$]+", text[position:])
        if bare:
            return bare.group(0).rstrip("."), position + bare.end()
    return None, start


_SPACING = re.compile(r"(?<!\\)\\(?:[,;:!> ]|quad(?![A-Za-z])|qquad(?![A-Za-z]))|~")  # not `\\` (a new row)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])|°")
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
_DEGREE_VALUE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])|°)")
_TEXT_COMMANDS = re.compile(r"\\(?:textbf|textrm|textnormal|textit|mathrm|mbox)\s*\{")
_TEXT_STARTING_WITH_NUMBER = re.compile(r"\\text\{\s*(-?\d[\d,]*(?:\.\d+)?)\s+([A-Za-z][^{}]*)\}")
# Digit grouping: Western (1,000,000; 1 000 000; 1\,000) and South Asian (1,00,000; 12,34,56,789).
_GROUPED_DIGITS = re.compile(r"^-?\d{1,3}(?:(?:\s|\{,\}|\\,|\\!|,)\d{3})+(?:\.\d+)?$")
_INDIAN_GROUPING = re.compile(r"^-?\d{1,2}(?:,\d{2})+,\d{3}(?:\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d{1,2}|\d{4,})$")  # no thousands grouping fits: 1000,99 or 3,5
_SCIENTIFIC = re.compile(r"^(-?\d+(?:\.\d+)?)[eE]([+-]?\d+)$")
_MIXED_NUMBER = re.compile(r"^(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$")  # 1\frac{1}{2} means 3/2, not 1·½
_MIXED_SLASH = re.compile(r"^(\d+)\s+(\d+)\s*/\s*(\d+)$")  # 3 1/2
# LaTeX commands given parenthesised arguments: math-verify reads `4\sqrt(2)` as 4.
_PAREN_FRACTION = re.compile(r"\\[dt]?frac\s*\(([^()]*)\)\s*\(([^()]*)\)")
_PAREN_ARGUMENT = re.compile(r"\\(sqrt)\s*\(([^()]*)\)")
_STILL_MALFORMED = re.compile(r"\\(?:sqrt|[dt]?frac|binom)\s*\(")
_PERCENT = re.compile(r"(?:\\%|%|\\text\{\s*(?:percent|\\%|%)\s*\}|\s+percent)$")
_RELATIONS = ((r"\\geq?(?![A-Za-z])|>=|≥", r"\\geq "), (r"\\leq?(?![A-Za-z])|<=|≤", r"\\leq "),
              (r"\\neq?(?![A-Za-z])|!=|≠", r"\\neq "), (r"\\lt(?![A-Za-z])", "<"), (r"\\gt(?![A-Za-z])", ">"))


def _normalize(answer: str) -> str:
    """Meaning-preserving clean-up of a LaTeX answer: spellings of fractions, spacing, degrees, money, text."""
    text = answer.replace("\n", " ").replace("−", "-").strip()
    text = text.replace("\\$", "").replace("$", "")
    text = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", text)
    text = re.sub(r"\\(?:displaystyle|left|right|big|Big|bigg|Bigg)(?![A-Za-z])", "", text)
    text = _TEXT_COMMANDS.sub(r"\\text{", text)
    if _TRIG.search(text):  # sin 30° is sin(π/6), not sin(30)
        text = _DEGREE_VALUE.sub(lambda m: f"({m[1]}\\pi/180)", text)
    text = _DEGREES.sub("", text)
    for pattern, replacement in _RELATIONS:
        text = re.sub(pattern, replacement, text)
    stripped = text.strip()
    if _GROUPED_DIGITS.match(stripped) or _INDIAN_GROUPING.match(stripped):
        text = re.sub(r"\s|\{,\}|\\,|\\!|,", "", stripped)
    elif _DECIMAL_COMMA.match(stripped):
        text = _DECIMAL_COMMA.sub(r"\1.\2", stripped)
    text = _SCIENTIFIC.sub(r"\1\\times 10^{\2}", text.strip())
    text = _SPACING.sub(" ", text).replace("{,}", ",")
    text = _TEXT_STARTING_WITH_NUMBER.sub(r"\1 \\text{\2}", text)
    text = text.replace("\\varnothing", "\\emptyset")
    text = _MIXED_NUMBER.sub(lambda m: f"\\frac{{{int(m[1]) * int(m[3]) + int(m[2])}}}{{{m[3]}}}", text)
    text = _MIXED_SLASH.sub(lambda m: f"\\frac{{{int(m[1]) * int(m[3]) + int(m[2])}}}{{{m[3]}}}", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(".").strip()


def _repair(answer: str) -> str:
    """LaTeX math-verify misreads, written the way the author meant: `4\\sqrt(2)` → `4\\sqrt{2}`,
    `\\frac(1)(3)` → `\\frac{1}{3}`."""
    answer = _PAREN_FRACTION.sub(lambda m: f"\\frac{{{m[1]}}}{{{m[2]}}}", answer)
    return _PAREN_ARGUMENT.sub(lambda m: f"\\{m[1]}{{{m[2]}}}", answer)


def _canonical(answer: str) -> str:
    """A string that equals another's only when both answers are written the same up to spacing."""
    # A space between a comma and a digit is kept: `3, 100` is a list, `3,100` a number.
    return re.sub(r"(?<![\d,])\s+|\s+(?!\d)", "", _normalize(answer))


# A choice letter is the whole answer: `B`, `(B)`, `B)`, `\text{(B)}`, `\mathrm{B}`, `\mathcal{B}`, or a letter
# in parentheses or followed by `)` and then the option's text. Never the first letter of an expression.
_CHOICE = re.compile(r"^(?:\(([A-E])\)(?:\s*(.*))?|([A-E])\)\s*(.*)|([A-E]))$", re.DOTALL)
_LETTER_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mathcal|mathit|textrm)\s*\{\s*(\(?[A-E]\)?)\s*\}(.*)$",
                             re.DOTALL)


def _split_choice(answer: str) -> tuple[str | None, str]:
    """`(B) 12`, `B) 12`, `\\text{(B)}`, `\\mathcal{B}`, `B` → ("B", "12" / ""); anything else → (None, answer)."""
    text = answer.strip().rstrip(".").strip()
    unwrapped = _LETTER_WRAPPER.match(text)
    if unwrapped:
        text = f"{unwrapped.group(1)} {unwrapped.group(2).strip()}".strip()
    match = _CHOICE.match(text)
    if not match:
        return None, answer
    letter = match.group(1) or match.group(3) or match.group(5)
    return letter, (match.group(2) or match.group(4) or "").strip()


def _split_percent(answer: str) -> tuple[str, bool]:
    """Strip a trailing percent sign (`\\%`, `%`, `\\text{ percent}`); tell whether there was one."""
    stripped = _PERCENT.sub("", answer).strip()
    return (stripped, True) if stripped != answer.strip() and stripped else (answer, False)


# --------------------------------------------------------------------------------------------------
# Mathematical comparison (run inside a worker process)
# --------------------------------------------------------------------------------------------------


# Inline math (`$...$`, `\(...\)`) cannot span a line break: math-verify's own tests mark such answers unequal.
_BROKEN_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)[^$]*\n[^$]*(?<![\\$])\$(?!\$)|\\\((?:(?!\\\)).)*\n", re.DOTALL)
# A box holding text with inline math (`\\boxed{The sum is $x \\neq 5$}`), which math-verify reads as text; a box of
# bare LaTeX (`4\\sqrt{2}`) it would read as text wrongly (the number 4), so that one is parsed as math instead.
_INLINE_MATH = re.compile(r"(?<!\\)\$|\\\(")
# Where math-verify's "equal" on the response as written is not trusted (each shown wrong in tests/test_math_verifier.py
# and listed in docs/math_verifier.md): the project's own comparison decides instead.
GUARDS = {
    "no_box": "the response has no \\boxed{} answer, which the prompt asks for (math-verify reads free text too)",
    "choice_letter": "a side is a multiple-choice letter: math-verify reads `e` as Euler's number, `(E)` as a letter",
    "trig_in_degrees": "math-verify drops degree signs, so sin 30° would equal sin 30",
    "inline_math_across_lines": "inline math spanning a line break is malformed LaTeX (math-verify's tests: unequal)",
}


def math_verify_guard(prediction: str, reference: str) -> str | None:
    """The guard (a key of GUARDS) under which math-verify's "equal" on these answers is not trusted, or None."""
    answers = (prediction, reference)
    if any(_split_choice(_normalize(answer))[0] for answer in answers):
        return "choice_letter"
    if any(_TRIG.search(answer) and _DEGREES.search(answer) for answer in answers):
        return "trig_in_degrees"
    if any(_BROKEN_INLINE_MATH.search(answer) for answer in answers):
        return "inline_math_across_lines"
    return None


def _plain_math_verify(response: str, reference: str) -> bool:
    """math-verify's parse + verify with its defaults on the response and reference as written (a bare reference
    in `$...$`, as its README does), its signal-based timeouts off (the worker's own limit holds)."""
    from math_verify import parse, verify

    gold = parse(reference if _BOX_COMMAND.search(reference) else f"${reference}$", parsing_timeout=None)
    target = parse(response, parsing_timeout=None)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


def _judge(response: str, reference: str, prediction: str, reference_answer: str) -> bool:
    """Rewrites only add matches: where plain math-verify says "equal" on the answer as written — the whole response,
    or the content of its box read as text (`\\boxed{The sum is $x \\neq 5$}`) — so does the checker (outside the
    GUARDS); otherwise the project's comparison of the extracted answers decides."""
    if math_verify_guard(prediction, reference_answer) is None and (
            _plain_math_verify(response, reference)
            or (_INLINE_MATH.search(prediction) and _plain_math_verify(prediction, reference))):
        return True
    return bool(reference_answer) and _answers_match(prediction, reference_answer)


def _answers_match(prediction: str, reference: str) -> bool:
    """The full comparison of two extracted answers; may take unbounded time, so it runs in a worker."""
    pred_letter, pred_value = _split_choice(_normalize(prediction))
    ref_letter, ref_value = _split_choice(_normalize(reference))
    if pred_letter and ref_letter:
        return pred_letter == ref_letter
    # One side names a choice letter, the other a value: compare values when the letter comes with one.
    if ref_letter:
        return bool(ref_value) and _values_match(prediction, ref_value)
    if pred_letter:
        return bool(pred_value) and _values_match(pred_value, reference)
    return _values_match(prediction, reference)


def _values_match(prediction: str, reference: str) -> bool:
    """math-verify on the answers as written first; then the project's rewrites, each only adding matches
    (a percentage also matches its value as a fraction of 100); then equations equal up to a factor."""
    prediction, reference = _repair(prediction), _repair(reference)
    if _STILL_MALFORMED.search(prediction) or _BROKEN_INLINE_MATH.search(prediction):
        return False  # whatever math-verify would read out of it is not what was written
    # math-verify drops degree signs, so sin 30° would equal sin 30: trigonometry in degrees goes to the rewrite.
    in_degrees = any(_TRIG.search(a) and _DEGREES.search(a) for a in (prediction, reference))
    if not in_degrees and _math_verify_equal(prediction, reference, boxed=True):
        return True
    pred, pred_is_percent = _split_percent(_normalize(prediction))
    ref, ref_is_percent = _split_percent(_normalize(reference))
    candidates = [(pred, ref)]
    if ref_is_percent and not pred_is_percent:
        candidates.append((pred, f"\\frac{{{ref}}}{{100}}"))
    elif pred_is_percent and not ref_is_percent:
        candidates.append((f"\\frac{{{pred}}}{{100}}", ref))
    return any(_math_verify_equal(p, r) for p, r in candidates) or _equations_proportional(pred, ref)


def _math_verify_equal(prediction: str, reference: str, boxed: bool = False) -> bool:
    """math-verify's verify on two bare LaTeX answers (`boxed`: parsed as `\\boxed{...}`, exactly as plain
    math-verify reads a boxed answer), its signal-based timeouts off (we kill instead)."""
    from math_verify import verify

    gold, target = _parse_answer(reference, boxed), _parse_answer(prediction, boxed)
    if not gold or not target:
        return False
    return bool(verify(list(gold), list(target), allow_set_relation_comp=True, timeout_seconds=None))


@functools.lru_cache(maxsize=4096)
def _parse_answer(answer: str, boxed: bool = False) -> tuple:
    """math-verify's parse of one answer, cached: the candidates of a problem share its reference answer."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    if boxed:
        return tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=None))
    configs = (LatexExtractionConfig(), ExprExtractionConfig())
    return tuple(parse(f"${answer}$", extraction_config=configs, parsing_timeout=None))


def _equations_proportional(prediction: str, reference: str) -> bool:
    """`2x+1=0` and `4x+2=0`: two equations whose sides' differences are a non-zero constant multiple of each
    other have the same solutions, so they count as the same answer (documented in docs/math_verifier.md)."""
    if prediction.count("=") != 1 or reference.count("=") != 1 or any(
            symbol in side for side in (prediction, reference) for symbol in ("\\geq", "\\leq", "\\neq", "<", ">")):
        return False
    import sympy

    try:
        differences = []
        for answer in (prediction, reference):
            parsed = [item for item in _parse_answer(answer) if isinstance(item, sympy.Eq)]
            if not parsed:
                return False
            differences.append(sympy.simplify(parsed[0].lhs - parsed[0].rhs))
        if differences[1] == 0 or not differences[0].free_symbols:
            return False
        ratio = sympy.simplify(differences[0] / differences[1])
        return not ratio.free_symbols and ratio.is_number and ratio != 0 and ratio.is_finite is True
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, sympy.SympifyError):
        return False


class _SoftTimeout(BaseException):
    """Raised in a worker by its own interval timer; BaseException so math-verify's `except Exception` can't eat it."""


def _raise_soft_timeout(signum: int, frame: object) -> None:
    raise _SoftTimeout


def serve_worker() -> None:
    """Worker process main loop: JSON jobs on stdin, JSON verdicts on stdout; started by the pool below."""
    import logging
    import resource

    logging.disable(logging.CRITICAL)  # math-verify logs each parse failure; verdicts are what matter here
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints of sympy must not corrupt the protocol
    _exit_when_orphaned(os.getppid())
    limit = _WORKER_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _raise_soft_timeout)
    _judge("\\boxed{\\frac{1}{2}}", "0.5", "\\frac{1}{2}", "0.5")  # import and warm up sympy and ANTLR first
    protocol_out.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        job = json.loads(line)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, job["soft_timeout_s"])
                verdict = _judge(*job["check"])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except (_SoftTimeout, Exception):
            verdict = False
        protocol_out.write(json.dumps({"equal": verdict}).encode() + b"\n")


def _exit_when_orphaned(parent_pid: int) -> None:
    """End this worker soon after its parent dies, even mid-job (stdin EOF only ends it between jobs)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


# --------------------------------------------------------------------------------------------------
# Worker pool with hard per-check deadlines
# --------------------------------------------------------------------------------------------------

_WORKER_MEMORY_MB = 4096
_WORKER_START_TIMEOUT_S = 120.0
_SOFT_TIMEOUT_SHARE = 0.8  # the worker's own timer fires first so an ordinary overrun costs no respawn
_WORKER_BOOT = "from reward_transfer.verifiers.math import serve_worker; serve_worker()"


class _Worker:
    """One warm worker process speaking JSON lines over pipes."""

    def __init__(self) -> None:
        package_parent = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal stops the parent, which then reaps us
        )
        self.ready = False
        self.dead = False
        self.started = time.monotonic()
        self._buffer = b""

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def send(self, check: tuple[str, str, str, str], timeout_s: float) -> None:
        """Start one check: (response, reference, extracted prediction, extracted reference answer)."""
        job = {"check": list(check), "soft_timeout_s": timeout_s * _SOFT_TIMEOUT_SHARE}
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self.dead = True

    def read_messages(self) -> list[dict]:
        """Messages available now (call only when select() says the pipe is readable)."""
        chunk = os.read(self.fileno(), 65536)
        if not chunk:
            self.dead = True
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.dead = True


class _WorkerPool:
    """Warm workers shared by all checks of this process; a check that overruns kills its worker."""

    def __init__(self) -> None:
        self.workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()

    def run(
        self, pairs: Sequence[tuple[str, str, str, str]], timeout_s: float, workers: int, progress=None
    ) -> list[bool]:
        """Verdicts for `pairs` (checks for `_judge`), in order, on up to `workers` processes."""
        with self._lock:
            if os.getpid() != self._owner_pid:  # forked child: the inherited pipes belong to the parent
                self.workers, self._owner_pid = [], os.getpid()
            for worker in self.workers:
                if worker.process.poll() is not None:
                    worker.kill()  # died on its own while idle: reap it and close its pipes
            self.workers = [w for w in self.workers if not w.dead]
            while len(self.workers) < max(1, min(workers, len(pairs))):
                self.workers.append(_Worker())
            return _Batch(self, pairs, timeout_s, len(self.workers[: max(1, workers)]), progress).run()

    def replace(self, worker: _Worker) -> _Worker:
        """Kill `worker` and start its successor in the same slot (not waited for)."""
        worker.kill()
        successor = _Worker()
        self.workers[self.workers.index(worker)] = successor
        return successor

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._owner_pid:
                for worker in self.workers:
                    worker.kill()
            self.workers = []


class _Batch:
    """One `run` of the pool: hands out pairs to ready workers, collects verdicts, enforces deadlines."""

    def __init__(self, pool: _WorkerPool, pairs, timeout_s: float, size: int, progress) -> None:
        self.pool, self.pairs, self.timeout_s, self.progress = pool, pairs, timeout_s, progress
        self.slots = list(range(size))
        self.results = [False] * len(pairs)
        self.pending = deque(range(len(pairs)))
        self.in_flight: dict[_Worker, tuple[int, float]] = {}
        self.failed_starts = 0

    def run(self) -> list[bool]:
        try:
            while self.pending or self.in_flight:
                self._dispatch()
                self._collect(self._wait())
                self._enforce_deadlines()
        except BaseException:
            for worker in self.in_flight:  # their late verdicts must not be read by the next call
                worker.kill()
            raise
        return self.results

    def _active(self) -> list[_Worker]:
        return [self.pool.workers[slot] for slot in self.slots]

    def _done(self, worker: _Worker, verdict: bool) -> None:
        index, _ = self.in_flight.pop(worker)
        self.results[index] = verdict
        if self.progress is not None:
            self.progress.update(1)

    def _dispatch(self) -> None:
        for worker in self._active():
            if worker.ready and worker not in self.in_flight and self.pending:
                index = self.pending.popleft()
                worker.send(self.pairs[index], self.timeout_s)
                if worker.dead:  # it died while idle: not this pair's fault, so retry the pair elsewhere
                    self.pending.appendleft(index)
                    self.pool.replace(worker)
                else:
                    self.in_flight[worker] = (index, time.monotonic() + self.timeout_s)

    def _wait(self) -> list[_Worker]:
        """Workers with something to read, waiting at most until the nearest deadline."""
        waiting = [w for w in self._active() if w in self.in_flight or not w.ready]
        deadlines = [deadline for _, deadline in self.in_flight.values()]
        deadlines += [w.started + _WORKER_START_TIMEOUT_S for w in waiting if not w.ready]
        readable, _, _ = select.select(waiting, [], [], max(0.0, min(deadlines) - time.monotonic()))
        return readable

    def _collect(self, readable: list[_Worker]) -> None:
        for worker in readable:
            for message in worker.read_messages():
                if message.get("ready"):
                    worker.ready = True
                    self.failed_starts = 0
                elif worker in self.in_flight:
                    self._done(worker, bool(message.get("equal")))

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._active():
            if worker in self.in_flight and (worker.dead or now >= self.in_flight[worker][1]):
                self._done(worker, False)  # overran its time limit or crashed on this pair
                self.pool.replace(worker)
            elif not worker.ready and (worker.dead or now >= worker.started + _WORKER_START_TIMEOUT_S):
                self.failed_starts += 1
                if self.failed_starts > 3:
                    raise RuntimeError("math verifier: worker processes fail to start (see their stderr)")
                self.pool.replace(worker)


_POOL = _WorkerPool()
atexit.register(_POOL.close)


def shutdown_workers() -> None:
    """Stop the worker processes now (they restart on the next check; also done automatically at exit)."""
    _POOL.close()


# --------------------------------------------------------------------------------------------------
# Public checks
# --------------------------------------------------------------------------------------------------


_INTEGER = re.compile(r"^-?\d{1,100}$")


def _reference_answer(reference: str) -> str | None:
    """The reference's final answer: its last box if it is a worked solution, else the bare text."""
    if not isinstance(reference, str):
        return None
    answer = extract_answer(reference) if _BOX_COMMAND.search(reference) else reference.strip()
    return answer or None


def _prepare(prediction: str, reference: str) -> tuple[str, str, str, str] | bool:
    """Decide cheaply what needs no parsing: False without a box (the prompt asks for one), True for the same
    spelling or the same integer. Else the check for a worker: (response, reference, their
    extracted answers); a "not equal" is never decided here, since math-verify may read the response otherwise."""
    pred_answer = extract_answer(prediction)
    ref_answer = _reference_answer(reference) or ""
    if not pred_answer or not isinstance(reference, str):
        return False
    pred_canonical, ref_canonical = _canonical(pred_answer), _canonical(ref_answer)
    if pred_canonical == ref_canonical or (_INTEGER.match(pred_canonical) and _INTEGER.match(ref_canonical)
                                           and int(pred_canonical) == int(ref_canonical)):
        return True
    return prediction, reference, pred_answer, ref_answer


def is_equivalent(prediction: str, reference: str, timeout_s: float = 5.0) -> bool:
    """True when the last `\\boxed{}` answer of the response `prediction` equals `reference` mathematically.

    `reference` is a bare answer or a worked solution (its last box counts). A response without a box is
    False: the prompt asks for one. Never raises on bad input; returns within about `timeout_s`.
    """
    return are_equivalent([prediction], [reference], timeout_s=timeout_s, workers=1)[0]


def are_equivalent(
    predictions: Sequence[str],
    references: Sequence[str],
    timeout_s: float = 5.0,
    workers: int | None = None,
    show_progress: bool = False,
) -> list[bool]:
    """`is_equivalent` for many pairs at once on `workers` processes (default: all cores), order preserved.

    Each pair has its own `timeout_s`; a pair that overruns only costs its worker a restart.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    results: list[bool] = []
    to_compare: list[tuple[str, str, str, str]] = []
    positions: list[int] = []
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        try:
            prepared = _prepare(prediction, reference)
        except Exception:
            prepared = False
        if isinstance(prepared, bool):
            results.append(prepared)
        else:
            results.append(False)
            to_compare.append(prepared)
            positions.append(index)
    if not to_compare:
        return results
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(to_compare), desc="math answers", unit="check")
    try:
        verdicts = _POOL.run(to_compare, timeout_s, workers, progress)
    finally:
        if progress is not None:
            progress.close()
    for index, verdict in zip(positions, verdicts, strict=True):
        results[index] = verdict
    return results


# --------------------------------------------------------------------------------------------------
# Which reference answers can be compared at all (the paper kept "only problems with easy-to-compare answers")
# --------------------------------------------------------------------------------------------------

_PROOF_TASK = re.compile(r"\b(?:prove|show that|demonstrate that|verify that|justify why)\b", re.IGNORECASE)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{3,}")
_PAREN_COMMAND = re.compile(r"\\(?:sqrt|frac|dfrac|tfrac|binom)\s*\(")  # `4\sqrt(2)`: math-verify reads 4
MAX_REFERENCE_CHARS = 200


def reference_problem(problem: str, answer: str) -> str | None:
    r"""Why a reference answer is not easy to compare (a short reason), or None when it is.

    Cheap rules, no parsing: proof tasks, free text (two or more words outside LaTeX commands), LaTeX that
    math-verify misreads (unbalanced braces, `\sqrt(2)`), and answers longer than MAX_REFERENCE_CHARS.
    `references_parse` checks the rest.
    """
    if _PROOF_TASK.search(problem):
        return "proof problem"
    if len(answer) > MAX_REFERENCE_CHARS:
        return f"answer longer than {MAX_REFERENCE_CHARS} characters"
    if answer.count("{") != answer.count("}") or _PAREN_COMMAND.search(answer):
        return "malformed LaTeX answer"
    if len(_WORD.findall(_LATEX_COMMAND.sub(" ", answer))) >= 2:
        return "free-text answer"
    return None


def references_parse(answers: Sequence[str], timeout_s: float = 5.0, workers: int | None = None) -> list[bool]:
    """Whether each answer parses to a value that equals itself under the full comparison, within `timeout_s`.

    Runs in the same time-limited workers as the checks, so an explosive reference costs a restart, not a hang.
    """
    if not answers:
        return []
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return _POOL.run([(f"\\boxed{{{answer}}}", answer, answer, answer) for answer in answers], timeout_s, workers)
