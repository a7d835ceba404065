"""Select the next active-learning pairs (one round) and write the selection state.

accelerate launch --config_file=deepspeed/1_1GPU.yaml active_data_selection.py --config-name=math_initial
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.active_learning import select_pairs
from reward_transfer.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs/active_data_selection", config_name=None)
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        select_pairs(cfg)


if __name__ == "__main__":
    main()
