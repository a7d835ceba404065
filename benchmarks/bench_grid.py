"""Wall time of the tiny grid one step after another (`executor=subprocess`) and side by side (`executor=local`),
measured in the same run, against what the graph allows.

Both runs start from an empty run folder and execute every step as its command line; the second runs up to
`--max-parallel` steps at once. "Allowed" is the speed-up the graph permits with that many slots when each step
takes as long as it took in the serial run (the planned schedule over the measured step times); the critical path's
share is the part of the serial time no number of slots removes. The two runs must give the same results.

    python benchmarks/bench_grid.py                     # the whole tiny grid, every step of `make demo` (long on 2 cores)
    python benchmarks/bench_grid.py --domains math      # one domain's grid (minutes)
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from reward_transfer.grid.plan import plan_from_config
from reward_transfer.grid.script import critical_path, makespan
from reward_transfer.grid.state import read_marker

REPO = Path(__file__).resolve().parent.parent


def run_grid(run: Path, overrides: list[str]) -> float:
    """Wall seconds of `reproduce.py` on a fresh run folder."""
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "reproduce.py", f"output_dir={run}", *overrides], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def accuracies(run: Path) -> dict[str, float]:
    """Each evaluation's headline figure: its accuracy, or a benchmark's score."""
    results = {path.parent.name: json.loads(path.read_text()) for path in sorted(run.glob("eval/*/results.json"))}
    return {name: data.get("accuracy", data.get("score")) for name, data in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default=None, help="comma-separated domains (default: the tiny profile's)")
    parser.add_argument("--max-parallel", type=int, default=2)
    args = parser.parse_args()
    common = [f"profile.domains=[{args.domains}]"] if args.domains else []
    folder = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        import reward_transfer.grid.profile  # noqa: F401  (registers the schema)

        steps = plan_from_config(compose("config", overrides=[f"output_dir={folder / 'serial'}", *common])).steps
    print(f"tiny grid: {len(steps)} steps, each its own command line; {args.max_parallel} at once vs one after another")
    serial = run_grid(folder / "serial", [*common, "executor=subprocess"])
    parallel = run_grid(folder / "local", [*common, "executor=local", f"executor.max_parallel={args.max_parallel}"])
    cost = {step.name: (read_marker(folder / "serial", step.name) or {}).get("seconds", 0.0) for step in steps}
    total, (path_length, _) = sum(cost.values()), critical_path(steps, cost)
    allowed = total / makespan(steps, None, args.max_parallel, cost)
    same = accuracies(folder / "serial") == accuracies(folder / "local")
    print(f"executor=subprocess: {serial:7.1f} s (steps themselves {total:.1f} s)")
    print(f"executor=local max_parallel={args.max_parallel}: {parallel:7.1f} s")
    print(f"speed-up: {serial / parallel:.2f}x measured; the graph allows {allowed:.2f}x with {args.max_parallel} "
          f"slots at these step times; critical path {path_length:.1f} s = {path_length / total:.1%} of the steps' time")
    print(f"same results in both runs: {same} ({len(accuracies(folder / 'serial'))} evaluations)")
    shutil.rmtree(folder, ignore_errors=True)
    if not same:
        raise SystemExit("the two executors gave different results")


if __name__ == "__main__":
    main()
