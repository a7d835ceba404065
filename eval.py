"""Evaluate a reward model: judgment accuracy on held-out pairs, or best-of-n reranking (`mode=best_of_n`).

accelerate launch --config_file=deepspeed/1_1GPU.yaml eval.py --config-name=math_scratch
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.cli import entry_point
from reward_transfer.evaluation import evaluate


@hydra.main(version_base="1.3", config_path="configs/eval", config_name=None)
def main(cfg: DictConfig) -> None:
    with entry_point():
        evaluate(cfg)


if __name__ == "__main__":
    main()
