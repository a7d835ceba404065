"""Programs/second of the code sandbox against a naive harness, measured in the same run.

Harnesses, all on the same ~200 small stdin programs x 5 tests (some right, some wrong):
- naive: one fresh `python3` subprocess per test case, sequential, no isolation;
- per-program: all tests of a program in one unisolated subprocess (as the original project did), in parallel;
- sandbox: `run_tests_batch` with every isolation in force (cold: including worker start-up; warm: reused).
Then programs that do not compile (syntax errors, 20 tests each): the sandbox answers from one compile, against
as many programs that fail at their first statement at run time (what a program that does not compile cost before:
a test process per test), same test counts.
Usage: python benchmarks/bench_sandbox.py [--programs 200] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reward_transfer.verifiers.code import (
    close_default_pool,
    default_pool,
    run_tests_batch,
    stdout_matches,
)

# (program, inputs, expected outputs): each problem has a right solution and a wrong one.
PROBLEMS = [
    ("a, b = map(int, input().split())\nprint(a + b)",
     "a, b = map(int, input().split())\nprint(a - b)",
     [f"{i} {2 * i + 1}\n" for i in range(5)], [str(3 * i + 1) for i in range(5)]),
    ("s = input().strip()\nprint(s[::-1])",
     "s = input().strip()\nprint(s)",
     ["abc\n", "hello\n", "x\n", "racecar\n", "ab\n"], ["cba", "olleh", "x", "racecar", "ba"]),
    ("import sys\nn, *xs = map(int, sys.stdin.read().split())\nprint(max(xs))",
     "import sys\nn, *xs = map(int, sys.stdin.read().split())\nprint(xs[0])",
     [f"3\n{i} {i + 5} {i + 2}\n" for i in range(5)], [str(i + 5) for i in range(5)]),
    ("from collections import Counter\ns = input()\nprint(Counter(s).most_common(1)[0][1])",
     "s = input()\nprint(len(set(s)))",
     ["aab\n", "abc\n", "zzzz\n", "abab\n", "q\n"], ["2", "1", "4", "2", "1"]),
    ("n = int(input())\nprint(sum(i * i for i in range(n + 1)))",
     "n = int(input())\nprint(sum(range(n + 1)))",
     [f"{i}\n" for i in (1, 2, 10, 100, 1000)], [str(sum(j * j for j in range(i + 1))) for i in (1, 2, 10, 100, 1000)]),
]


def make_workload(count: int) -> tuple[list[str], list[dict]]:
    codes, specs = [], []
    for index in range(count):
        right, wrong, inputs, outputs = PROBLEMS[index % len(PROBLEMS)]
        codes.append((right if index % 3 else wrong) + f"\n# program {index}\n")
        specs.append({"inputs": inputs, "outputs": outputs})
    return codes, specs


def naive(codes: list[str], specs: list[dict], workdir: Path) -> list[int]:
    """One fresh interpreter per test case, one after the other."""
    passed = []
    for index, (code, spec) in enumerate(zip(codes, specs, strict=True)):
        path = workdir / f"naive_{index}.py"
        path.write_text(code)
        count = 0
        for test_input, expected in zip(spec["inputs"], spec["outputs"], strict=True):
            run = subprocess.run([sys.executable, str(path)], input=test_input, capture_output=True, text=True,
                                 timeout=10)
            count += run.returncode == 0 and stdout_matches(run.stdout, expected)
        passed.append(count)
    return passed


PER_PROGRAM_HARNESS = """
import io, json, sys
job = json.load(sys.stdin)
outputs = []
for test_input in job["inputs"]:
    sys.stdin, sys.stdout = io.StringIO(test_input), io.StringIO()
    try:
        exec(job["code"], {"__name__": "__main__"})
        outputs.append(sys.stdout.getvalue())
    except BaseException:
        outputs.append(None)
sys.stdout = sys.__stdout__
print(json.dumps(outputs))
"""


def per_program(codes: list[str], specs: list[dict], workers: int) -> list[int]:
    """All tests of a program in one unisolated subprocess, programs in parallel (the original's design)."""
    def one(code: str, spec: dict) -> int:
        run = subprocess.run([sys.executable, "-c", PER_PROGRAM_HARNESS], capture_output=True, text=True,
                             input=json.dumps({"code": code, "inputs": spec["inputs"]}), timeout=60)
        outputs = json.loads(run.stdout)
        return sum(out is not None and stdout_matches(out, exp)
                   for out, exp in zip(outputs, spec["outputs"], strict=True))

    with ThreadPoolExecutor(workers) as executor:
        return list(executor.map(one, codes, specs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=4,
                        help="the workload is split into rounds and the harnesses alternate, so that load "
                             "from other jobs on a shared machine hits all of them alike")
    args = parser.parse_args()
    codes, specs = make_workload(args.programs)
    print(f"{args.programs} programs x 5 stdin tests, {args.workers} workers, {args.rounds} rounds, "
          f"python {sys.version.split()[0]}", flush=True)
    close_default_pool()
    started = time.perf_counter()
    default_pool().ensure_workers(args.workers)
    startup_s = time.perf_counter() - started
    features = default_pool().features
    with tempfile.TemporaryDirectory() as tmp:
        harnesses = {
            "sandbox (run_tests_batch)": lambda c, s: [r.passed for r in run_tests_batch(c, s, workers=args.workers)],
            "naive (subprocess per test)": lambda c, s: naive(c, s, Path(tmp)),
            "per-program subprocess (unisolated)": lambda c, s: per_program(c, s, args.workers),
        }
        seconds = dict.fromkeys(harnesses, 0.0)
        passed: dict[str, list[int]] = {name: [] for name in harnesses}
        size = -(-args.programs // args.rounds)
        for first in tqdm(range(0, args.programs, size), desc="rounds"):
            chunk = slice(first, first + size)
            for name, harness in harnesses.items():
                begin = time.perf_counter()
                passed[name] += harness(codes[chunk], specs[chunk])
                seconds[name] += time.perf_counter() - begin
    close_default_pool()
    if len({tuple(counts) for counts in passed.values()}) != 1:
        sys.exit("error: the harnesses disagree on pass counts")
    rate = {name: args.programs / total for name, total in seconds.items()}
    sandbox, naive_name, per_program_name = harnesses
    cold = args.programs / (seconds[sandbox] + startup_s)
    for name, total in seconds.items():
        print(f"{name:<38} {total:7.2f} s  {rate[name]:7.1f} programs/s")
    print(f"{'sandbox incl. worker start-up':<38} {seconds[sandbox] + startup_s:7.2f} s  {cold:7.1f} programs/s")
    print(f"isolation in force: {json.dumps(features)}")
    print(f"ratio sandbox/naive: {rate[sandbox] / rate[naive_name]:.1f}x "
          f"(incl. start-up {cold / rate[naive_name]:.1f}x)   "
          f"per-program/naive: {rate[per_program_name] / rate[naive_name]:.1f}x   "
          f"sandbox/per-program: {rate[sandbox] / rate[per_program_name]:.1f}x")
    bench_compile_errors(max(args.programs // 4, 1), args.workers)
    close_default_pool()


def bench_compile_errors(count: int, workers: int) -> None:
    """Programs that do not compile vs programs that fail at once at run time, each with 20 tests."""
    spec = {"inputs": [f"{i}\n" for i in range(20)], "outputs": [str(i) for i in range(20)]}
    workloads = {"do not compile": [f"print(int(input()) + {i}\n" for i in range(count)],
                 "fail at run time": [f"raise ValueError({i})\n" for i in range(count)]}
    seconds = {}
    for name, codes in workloads.items():
        begin = time.perf_counter()
        results = run_tests_batch(codes, spec, workers=workers)
        seconds[name] = time.perf_counter() - begin
        if any(r.statuses != ["error"] * 20 for r in results):
            sys.exit(f"error: programs that {name} did not fail every test")
        print(f"{count} programs that {name:<17} x 20 tests: {seconds[name]:6.2f} s, "
              f"{sum(r.processes for r in results)} test processes")
    print(f"ratio for programs that do not compile (one compile vs a process per test): "
          f"{seconds['fail at run time'] / seconds['do not compile']:.1f}x")


if __name__ == "__main__":
    main()
