"""Run the active-learning rounds (select → train → merge → eval) for one domain and strategy; resumable.

python active_learning_loop.py --config-name=demo_math                  # tiny, offline, CPU
python active_learning_loop.py --config-name=math strategy=random       # the paper's random baseline (GPU)
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.active_learning_loop import run_active_learning
from reward_transfer.cli import entry_point


@hydra.main(version_base="1.3", config_path="configs/active_learning_loop", config_name=None)
def main(cfg: DictConfig) -> None:
    with entry_point():
        run_active_learning(cfg)


if __name__ == "__main__":
    main()
