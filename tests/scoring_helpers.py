"""Small pair datasets and candidate sets on disk, shaped like generation's output, for the scoring tests."""

import os
import sys
from pathlib import Path

from datasets import Dataset, DatasetDict
from hydra import compose, initialize_config_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
PYTHON = sys.executable


def pair_rows(num_problems: int, pairs_per_problem: int, domain: str = "math", prefix: str = "p") -> dict:
    """Pairs that reuse answers across pairs of a problem (as generation does), with varied lengths."""
    rows: dict[str, list] = {key: [] for key in ("problem", "accepted", "rejected", "pair_id", "problem_id",
                                                 "domain", "accepted_score", "rejected_score")}
    for p in range(num_problems):
        for k in range(pairs_per_problem):
            rows["problem"].append(f"Problem {prefix}{p}: what is {p} plus {k % 3}?")
            rows["accepted"].append(f"The answer is \\boxed{{{p + k % 3}}}." + " Indeed" * (7 * (k % 3)))
            rows["rejected"].append(f"Maybe {p * k + 7}." + " hmm" * (k % 5))
            rows["pair_id"].append(f"{prefix}{p}-{k}")
            rows["problem_id"].append(f"{prefix}{p}")
            rows["domain"].append(domain)
            if domain == "math":
                rows["accepted_score"].append(1.0)
                rows["rejected_score"].append(0.0)
            else:
                rows["accepted_score"].append([1.0, 0.5, 1.0][k % 3])
                rows["rejected_score"].append([0.0, 0.25, 0.5][k % 3])
    return rows


def write_pair_dataset(path: Path, train_problems: int = 10, eval_problems: int = 4, pairs_per_problem: int = 4,
                       domain: str = "math") -> Path:
    """A DatasetDict with train/eval splits (disjoint problems) saved at `path`."""
    DatasetDict({
        "train": Dataset.from_dict(pair_rows(train_problems, pairs_per_problem, domain, prefix="t")),
        "eval": Dataset.from_dict(pair_rows(eval_problems, pairs_per_problem, domain, prefix="e")),
    }).save_to_disk(str(path))
    return path


def compose_config(script: str, config_name: str, overrides: list[str]):
    """The config `script` would run with (`--config-name` and overrides), composed in-process."""
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / script), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)
