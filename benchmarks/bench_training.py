"""Training throughput of the tiny reward model: TRL's padded micro-batches against padding-free ones.

Pairs with a realistic length spread (answer lengths log-normal, as model-written solutions are) go through the
real stage function three times, in the same shuffled order: padded (TRL's collator, the naive way), padded with
length-grouped batches (`train.group_by_length`, which changes the order), and padding-free (`train.padding_free`).
Prints real tokens/s, the share of each batch that is padding, the ratios, and how far the padding-free run's
losses drift from the padded run's over the first steps.
"""

import json
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


MODES = {"padded (TRL)": [], "padded, length-grouped": ["train.group_by_length=true"],
         "padding-free": ["train.padding_free=true"]}


def run(data: Path, model: Path, out: Path, mode: list[str]) -> tuple[dict, list[float]]:
    """The run's summary and its logged losses."""
    overrides = [f"model.model_name_or_path={model}", f"dataset.datasets=[{{name_or_path:{data},split:train}}]",
                 f"output_dir={out}", "model.max_length=1024", "train.per_device_train_batch_size=8",
                 "train.logging_steps=1", "train.disable_dropout=true", "train.padding_free=false",
                 "train.group_by_length=false", *mode]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "train_reward_model"), version_base="1.3"):
        summary = train_reward_model(compose(config_name="demo_math", overrides=overrides))
    history = json.loads((out / "log_history.json").read_text())
    return summary, [entry["loss"] for entry in history if "loss" in entry]


def main() -> None:
    models = ensure_tiny_models(REPO_ROOT / ".tiny_models")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_pairs(Path(tmp) / "pairs")
        results = {label: run(data, models["rm"], Path(tmp) / f"run-{i}", mode)
                   for i, (label, mode) in enumerate(MODES.items())}
    print(f"\n{PAIRS} pairs, tiny RM on CPU, batch 8 pairs (16 sequences), max length 1024, one process")
    print(f"{'batches':<24}{'tokens/s':>12}{'padding share':>16}{'tokens fed':>12}{'seconds':>10}")
    for label, (summary, _) in results.items():
        fed = summary["tokens"] if summary["padding_free"] else summary["padded_tokens"]
        print(f"{label:<24}{summary['tokens_per_second']:>12.0f}{100 * summary['padding_share']:>15.1f}%"
              f"{fed:>12}{summary['seconds']:>10.1f}")
    base = results["padded (TRL)"][0]["tokens_per_second"]
    for label in list(MODES)[1:]:
        print(f"{label} / padded throughput: {results[label][0]['tokens_per_second'] / base:.2f}x")
    padded_losses, free_losses = results["padded (TRL)"][1], results["padding-free"][1]
    drift = max(abs(a - b) for a, b in zip(padded_losses[:10], free_losses[:10], strict=True))
    print(f"padding-free vs padded, same pairs in the same order: largest loss difference over the first 10 steps "
          f"{drift:.1e}")


if __name__ == "__main__":
    main()
