"""Generation with labelling overlapped with sampling, against one after the other, measured in the same run.

The sampler is the replay backend with a delay per problem standing in for the GPU's sampling time (set it with
`--sample-s`); the labelling is real: the demo code problems' programs run in the sandbox. Both runs write the
same pairs; the ratio is the wall time of the sequential pipeline (`BATCHES_IN_FLIGHT = 0`) over the overlapped
one. The ideal is (sampling + labelling) / max(sampling, labelling).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.chdir(REPO_ROOT)

from datasets import load_from_disk  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from reward_transfer.generation import generate_preference_data, pipeline  # noqa: E402


def run(out: Path, in_flight: int, sample_s: float) -> float:
    pipeline.BATCHES_IN_FLIGHT = in_flight
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "generate_preference_data"), version_base="1.3"):
        cfg = compose("demo_code", [f"output_dir={out}", "progress=false", "generation.problems_per_batch=2",
                                    f"generation.replay_delay_s={sample_s}"])
    started = time.perf_counter()
    generate_preference_data(cfg)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-s", type=float, default=0.5, help="seconds of 'GPU' sampling per problem")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sequential = run(Path(tmp) / "sequential", 0, args.sample_s)
        overlapped = run(Path(tmp) / "overlapped", 1, args.sample_s)
        same = all(load_from_disk(str(Path(tmp) / "sequential"))[s]["pair_id"]
                   == load_from_disk(str(Path(tmp) / "overlapped"))[s]["pair_id"] for s in ("train", "eval"))
    print(f"\n16 code problems x 10 programs, 2 problems per batch, sampling stand-in {args.sample_s} s/problem")
    print(f"sampling then labelling, batch after batch: {sequential:6.1f} s")
    print(f"labelling overlapped with sampling:        {overlapped:6.1f} s")
    print(f"speed-up: {sequential / overlapped:.2f}x; same pairs: {same}")


if __name__ == "__main__":
    main()
