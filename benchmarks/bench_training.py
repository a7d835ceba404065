"""Training throughput of the tiny reward model with and without length-grouped batching.

Pairs with a realistic length spread (answer lengths log-normal, as model-written solutions are) go through the
real stage function twice: random batches (the naive way) and length-grouped batches (`train.group_by_length`).
Prints real tokens/s, the share of each batch that is padding, and the ratio.
"""

import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices: a second thread only adds contention

from datasets import Dataset, DatasetDict
from hydra import compose, initialize_config_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from reward_transfer.tiny import ensure_tiny_models  # noqa: E402
from reward_transfer.training import train_reward_model  # noqa: E402

PAIRS = 512
WORDS = ["the", "answer", "is", "so", "we", "have", "x", "=", "5,", "2x", "+", "3", "13.", "\\frac{1}{2}",
         "print(sum(values))", "for", "i", "in", "range(n):", "\\boxed{42}", "since", "\\sqrt{16}", "4"]


def answer(rng: random.Random) -> str:
    length = min(int(rng.lognormvariate(4.3, 0.8)), 700)  # median ~75 words, long tail
    return " ".join(rng.choice(WORDS) for _ in range(max(length, 3)))


def write_pairs(path: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [{"problem": f"What is {rng.randint(1, 99)} + {rng.randint(1, 99)}?", "accepted": answer(rng),
             "rejected": answer(rng)} for _ in range(PAIRS)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    return path


def run(data: Path, model: Path, out: Path, grouped: bool) -> dict:
    overrides = [f"model.model_name_or_path={model}", f"dataset.datasets=[{{name_or_path:{data},split:train}}]",
                 f"output_dir={out}", "model.max_length=1024", "train.per_device_train_batch_size=8",
                 "train.logging_steps=1000", f"train.group_by_length={str(grouped).lower()}"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "train_reward_model"), version_base="1.3"):
        return train_reward_model(compose(config_name="demo_math", overrides=overrides))


def main() -> None:
    models = ensure_tiny_models(REPO_ROOT / ".tiny_models")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_pairs(Path(tmp) / "pairs")
        results = {grouped: run(data, models["rm"], Path(tmp) / f"run-{grouped}", grouped) for grouped in (False, True)}
    print(f"\n{PAIRS} pairs, tiny RM on CPU, batch 8 pairs (16 sequences), max length 1024")
    print(f"{'batching':<16}{'tokens/s':>12}{'padding share':>16}{'padded tokens':>16}{'seconds':>10}")
    for grouped, label in ((False, "random (naive)"), (True, "length-grouped")):
        r = results[grouped]
        print(f"{label:<16}{r['tokens_per_second']:>12.0f}{100 * r['padding_share']:>15.1f}%"
              f"{r['padded_tokens']:>16}{r['seconds']:>10.1f}")
    ratio = results[True]["tokens_per_second"] / results[False]["tokens_per_second"]
    print(f"length-grouped / random throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
