"""Benchmark of the math answer checker against plain math-verify on real-looking answer pairs.

Prints label agreement (ours vs `math_verify.parse`+`verify` with defaults) on the project's labelled sets and on
math-verify's own published test cases, the invariant (where math-verify says "equal", so does ours, outside the
documented guards), checks/second and worst-case
latency of `is_equivalent`, batch throughput of `are_equivalent` against one-by-one calls and against a
fresh subprocess per check, and the time to give up on inputs that make sympy explode.
Run: .venv/bin/python benchmarks/bench_math_verifier.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from reward_transfer.verifiers.math import (
    _prepare,
    _reference_answer,
    are_equivalent,
    extract_answer,
    is_equivalent,
    math_verify_guard,
    shutdown_workers,
)

REPO = Path(__file__).resolve().parent.parent
PAIRS_FILE = REPO / "data" / "math_answer_pairs.jsonl"
# Every labelled set the agreement figures read (each row: prediction, reference, expected; optional source
# and must_be_false, the false-positive kinds that must never pass).
LABELLED_SETS = (PAIRS_FILE, REPO / "tests" / "data" / "math_equivalence_cases.jsonl")
# math-verify's own test cases: tests/ of huggingface/Math-Verify at commit 5d148cf (MIT licence), as published.
PUBLISHED_CASES = REPO / "tests" / "data" / "math_verify_published_cases.jsonl"
EXPLOSIVE = [
    r"9^{9^{9^{9}}}",
    r"1000000!",
    r"10^{10^{10^{10}}} - 10^{10^{10^{10}}}",
    "(" * 400 + "1" + ")" * 400,
]


def load_pairs(path: Path) -> list[dict]:
    """The labelled (prediction, reference, expected) rows of the JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plain_math_verify(prediction: str, reference: str) -> bool:
    """The public baseline: math-verify's parse + verify with their defaults (a bare gold answer in `$...$`,
    as its README does; unwrapped, most bare answers fail to parse and the baseline would look far worse)."""
    from math_verify import parse, verify

    gold = reference if "\\boxed" in reference else f"${reference}$"
    try:
        return bool(verify(parse(gold), parse(prediction)))
    except Exception:  # its own time-outs and parser errors count as "not equal"
        return False


def boxed_response(pred: str) -> str:
    """A math-verify test prediction as a response to this project's prompt, which asks for a boxed answer: as it
    is when it holds a box, else its math (outer `$`, `$$`, `\\(`, `\\[` removed) or text inside one."""
    if "\\boxed" in pred:
        return pred
    inner = pred.strip()
    for opening, closing in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if inner.startswith(opening) and inner.endswith(closing) and len(inner) > len(opening) + len(closing):
            inner = inner[len(opening):-len(closing)].strip()
            break
    return f"The final answer is $\\boxed{{{inner}}}$."


def published_cases() -> list[dict]:
    """math-verify's published cases as this checker meets them: the prediction boxed (`boxed_response`), the gold as
    the reference. Cases whose label depends on a non-default setting of math-verify (precision, strict, set-relation
    comparison), which the checker does not use, are left out."""
    return [{"id": row["id"], "source": row["source"].split("::")[0], "category": row["source"].split("::")[1],
             "prediction": boxed_response(row["pred"]), "reference": row["gold"], "expected": row["expected"]}
            for row in load_pairs(PUBLISHED_CASES) if "settings" not in row]


def invariant_breaks(pairs: list[dict], ours: list[bool], baseline: list[bool]) -> list[tuple[dict, str | None]]:
    """Pairs where plain math-verify says "equal" and ours does not, with the guard that explains it (None: a bug)."""
    return [(pair, math_verify_guard(extract_answer(pair["prediction"]) or "", _reference_answer(pair["reference"])
                                     or "") if extract_answer(pair["prediction"]) else "no_box")
            for pair, o, b in zip(pairs, ours, baseline, strict=True) if b and not o]


def agreement(pairs: list[dict], name: str) -> tuple[int, int]:
    """Per source: share of pairs where each checker gives the expected label; false "correct" verdicts counted
    (all, and on the must-be-False cases). Returns (ours right, plain right)."""
    ours = are_equivalent([p["prediction"] for p in pairs], [p["reference"] for p in pairs])
    baseline = [plain_math_verify(p["prediction"], p["reference"]) for p in tqdm(pairs, desc="plain", leave=False)]
    print(f"{name}: {len(pairs)} pairs ({sum(p['expected'] for p in pairs)} equivalent)")
    print(f"  {'source':32} {'n':>4} {'ours':>7} {'plain':>7}  false correct (ours / plain)")
    by_source: dict[str, list[int]] = {}
    for pair, o, b in zip(pairs, ours, baseline, strict=True):
        row = by_source.setdefault(pair.get("source", name), [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += o == pair["expected"]
        row[2] += b == pair["expected"]
        row[3] += o and not pair["expected"]
        row[4] += b and not pair["expected"]
    for source, (n, o_ok, b_ok, o_fp, b_fp) in sorted(by_source.items()):
        print(f"  {source:32} {n:4d} {o_ok / n:7.1%} {b_ok / n:7.1%}  {o_fp} / {b_fp}")
    hard = [(p, o, b) for p, o, b in zip(pairs, ours, baseline, strict=True) if p.get("must_be_false")]
    if hard:
        print(f"  must-be-False cases: {len(hard)}; judged correct by ours {sum(o for _, o, _ in hard)}, "
              f"by plain math-verify {sum(b for _, _, b in hard)}")
    misses = Counter()
    for pair, o, b in zip(pairs, ours, baseline, strict=True):
        if b != pair["expected"]:
            misses[f"plain/{pair['category']}"] += 1
        if o != pair["expected"]:
            misses[f"ours/{pair['category']}"] += 1
            print(f"  ours wrong: {pair['id']} [{pair['category']}] expected {pair['expected']}")
    print("  errors by checker/category:", dict(sorted(misses.items())))
    breaks = invariant_breaks(pairs, ours, baseline)
    print(f"  math-verify says equal, ours not: {len(breaks)} ("
          + (", ".join(f"{pair['id']}: guard {guard}" for pair, guard in breaks) or "none") + ")")
    ours_ok = sum(o == p["expected"] for p, o in zip(pairs, ours, strict=True))
    base_ok = sum(b == p["expected"] for p, b in zip(pairs, baseline, strict=True))
    print(f"  overall: ours {ours_ok}/{len(pairs)} = {ours_ok / len(pairs):.1%}, "
          f"plain math-verify {base_ok}/{len(pairs)} = {base_ok / len(pairs):.1%}")
    return ours_ok, base_ok


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def plain_in_fresh_process(pairs: list[dict]) -> float:
    """Checks/second of plain math-verify in a new process, so its parser caches are as cold as a new worker's."""
    code = (
        "import json, logging, sys, time; logging.disable(logging.WARNING); "
        "sys.path.insert(0, sys.argv[1]); from bench_math_verifier import plain_math_verify; "
        "pairs = json.loads(sys.stdin.read()); plain_math_verify('$1$', '2'); start = time.perf_counter(); "
        "[plain_math_verify(p['prediction'], p['reference']) for p in pairs]; "
        "print(len(pairs) / (time.perf_counter() - start))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def fresh_workers(count: int) -> float:
    """Restart the workers (cold caches) and return the start-up time, which is paid once per process."""
    shutdown_workers()
    start = time.perf_counter()
    are_equivalent([r"\boxed{\frac{1}{2}}"] * count, ["0.5"] * count, workers=count)
    return time.perf_counter() - start


def throughput(pairs: list[dict], repeats: int, cores: int) -> None:
    """Checks/second and latency one by one, the batch form on all cores, and a process per check.

    Each pass starts from fresh workers, so repeated pairs never hit the worker's parse cache.
    """
    predictions = [p["prediction"] for p in pairs]
    references = [p["reference"] for p in pairs]
    n = len(pairs)
    decided_in_caller = sum(
        isinstance(_prepare(p, r), bool) for p, r in zip(predictions, references, strict=True)
    )

    startup_s, latencies, single_s = [], [], 0.0
    for _ in tqdm(range(repeats), desc="one by one", leave=False):
        startup_s.append(fresh_workers(1))
        start = time.perf_counter()
        for prediction, reference in zip(predictions, references, strict=True):
            t0 = time.perf_counter()
            is_equivalent(prediction, reference)
            latencies.append(time.perf_counter() - t0)
        single_s += time.perf_counter() - start

    batch_s = 0.0
    for _ in tqdm(range(repeats), desc="batch", leave=False):
        fresh_workers(cores)
        start = time.perf_counter()
        batch = are_equivalent(predictions, references, workers=cores)
        batch_s += time.perf_counter() - start
        assert batch == [is_equivalent(p, r) for p, r in zip(predictions, references, strict=True)]

    plain_warm_rate = n / timed(
        lambda: [plain_math_verify(p, r) for p, r in zip(predictions, references, strict=True)]
    )
    plain_cold_rate = plain_in_fresh_process(pairs)

    spawn_n = 20
    code = (
        "import sys, json; from reward_transfer.verifiers.math import _answers_match; "
        "p, r = json.loads(sys.stdin.read()); print(_answers_match(p, r))"
    )
    start = time.perf_counter()
    for pair in pairs[:spawn_n]:
        subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps([pair["prediction"], pair["reference"]]),
            capture_output=True,
            text=True,
            check=True,
        )
    spawn_s = time.perf_counter() - start

    total = n * repeats
    latencies.sort()
    print(
        f"worker start-up (once per process, not in the figures below): median {sorted(startup_s)[repeats // 2]:.2f} s"
    )
    print(f"{decided_in_caller}/{n} pairs are decided without a worker (no box, or the same spelling)")
    print(
        f"is_equivalent one by one, {total} checks: {total / single_s:.1f} checks/s,"
        f" median {latencies[total // 2] * 1e3:.1f} ms, p99 {latencies[int(total * 0.99)] * 1e3:.1f} ms,"
        f" worst {latencies[-1] * 1e3:.1f} ms"
    )
    print(
        f"are_equivalent on {cores} workers, same checks: {total / batch_s:.1f} checks/s"
        f" = {single_s / batch_s:.2f}x one by one"
    )
    print(
        f"plain math-verify in-process (no hard limit, main thread only): {plain_cold_rate:.1f} checks/s on a"
        f" fresh process like our workers, {plain_warm_rate:.1f} checks/s warm (its ANTLR caches filled)"
    )
    print(
        f"naive, a fresh process per check: {spawn_n / spawn_s:.1f} checks/s -> is_equivalent is"
        f" {(total / single_s) / (spawn_n / spawn_s):.0f}x, are_equivalent {(total / batch_s) / (spawn_n / spawn_s):.0f}x faster"
    )


def explosive(timeout_s: float) -> None:
    """Time to give up (False) on inputs that make sympy explode, single and in a batch with normal pairs."""
    for expression in EXPLOSIVE:
        start = time.perf_counter()
        verdict = is_equivalent(f"\\boxed{{{expression}}}", "5", timeout_s=timeout_s)
        label = expression if len(expression) < 40 else expression[:20] + "..."
        print(f"  {label:42} -> {verdict} after {time.perf_counter() - start:.2f} s (timeout_s={timeout_s})")
    predictions = [f"\\boxed{{{e}}}" for e in EXPLOSIVE] + ["\\boxed{\\frac{1}{2}}"] * 8
    start = time.perf_counter()
    verdicts = are_equivalent(predictions, ["5"] * len(EXPLOSIVE) + ["0.5"] * 8, timeout_s=timeout_s)
    print(
        f"  batch of {len(EXPLOSIVE)} explosive + 8 normal pairs: {time.perf_counter() - start:.2f} s, verdicts {verdicts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS_FILE, help="the pairs the speed figures use")
    parser.add_argument("--repeats", type=int, default=4, help="passes over the pairs for the speed figures")
    parser.add_argument("--timeout", type=float, default=1.0, help="timeout_s for the explosive inputs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # plain math-verify logs every timeout and parse failure
    pairs = load_pairs(args.pairs)
    print("== agreement with the expected labels ==")
    for path in LABELLED_SETS:
        agreement(load_pairs(path), path.relative_to(REPO).as_posix())
    agreement(published_cases(), f"math-verify's published test cases ({PUBLISHED_CASES.name}, default settings)")
    cores = len(os.sched_getaffinity(0))
    print(f"== speed ({cores} cores, load average {os.getloadavg()[0]:.1f} at start) ==")
    throughput(pairs, args.repeats, cores)
    print("== explosive inputs ==")
    explosive(args.timeout)
    shutdown_workers()


if __name__ == "__main__":
    main()
