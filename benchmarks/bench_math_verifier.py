"""Benchmark of the math answer checker against plain math-verify on real-looking answer pairs.

Prints label agreement (ours vs `math_verify.parse`+`verify` with defaults), checks/second and worst-case
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

from reward_transfer.verifiers.math import _prepare, are_equivalent, is_equivalent, shutdown_workers

PAIRS_FILE = Path(__file__).resolve().parent.parent / "data" / "math_answer_pairs.jsonl"
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
    return bool(verify(parse(gold), parse(prediction)))


def agreement(pairs: list[dict]) -> None:
    """Share of pairs where each checker gives the expected label, with the disagreements listed."""
    ours = [is_equivalent(p["prediction"], p["reference"]) for p in tqdm(pairs, desc="ours", leave=False)]
    baseline = [
        plain_math_verify(p["prediction"], p["reference"]) for p in tqdm(pairs, desc="plain", leave=False)
    ]
    expected = [p["expected"] for p in pairs]
    ours_ok = sum(o == e for o, e in zip(ours, expected, strict=True))
    base_ok = sum(b == e for b, e in zip(baseline, expected, strict=True))
    n = len(pairs)
    print(f"pairs: {n} ({sum(expected)} equivalent, {n - sum(expected)} not)")
    print(f"agreement with labels  ours: {ours_ok}/{n} = {ours_ok / n:.1%}")
    print(f"                       plain math-verify: {base_ok}/{n} = {base_ok / n:.1%}")
    misses = Counter()
    for pair, o, b in zip(pairs, ours, baseline, strict=True):
        if b != pair["expected"]:
            misses[f"plain/{pair['category']}"] += 1
        if o != pair["expected"]:
            misses[f"ours/{pair['category']}"] += 1
            print(f"  ours wrong: {pair['id']} [{pair['category']}] expected {pair['expected']}")
    print("  errors by checker/category:", dict(sorted(misses.items())))


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
    parser.add_argument("--pairs", type=Path, default=PAIRS_FILE)
    parser.add_argument("--repeats", type=int, default=4, help="passes over the pairs for the speed figures")
    parser.add_argument("--timeout", type=float, default=1.0, help="timeout_s for the explosive inputs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # plain math-verify logs every timeout and parse failure
    pairs = load_pairs(args.pairs)
    print("== agreement with the expected labels ==")
    agreement(pairs)
    cores = len(os.sched_getaffinity(0))
    print(f"== speed ({cores} cores, load average {os.getloadavg()[0]:.1f} at start) ==")
    throughput(pairs, args.repeats, cores)
    print("== explosive inputs ==")
    explosive(args.timeout)
    shutdown_workers()


if __name__ == "__main__":
    main()
