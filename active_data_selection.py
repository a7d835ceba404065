"""Select the next active-learning pairs (one round) and write the selection state.

accelerate launch --config_file=deepspeed/1_1GPU.yaml active_data_selection.py --config-name=math_initial
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.active_learning import select_pairs
from reward_transfer.cli import entry_point


@hydra.main(version_base="1.3", config_path="configs/active_data_selection", config_name=None)
def main(cfg: DictConfig) -> None:
    with entry_point():
        select_pairs(cfg)


if __name__ == "__main__":
    main()
