"""Train a reward model (LoRA, TRL RewardTrainer): `python train_reward_model.py --config-name=math_20k`."""

import hydra
from omegaconf import DictConfig

from reward_transfer.cli import entry_point
from reward_transfer.training import train_reward_model


@hydra.main(version_base="1.3", config_path="configs/train_reward_model", config_name=None)
def main(cfg: DictConfig) -> None:
    with entry_point():
        train_reward_model(cfg)


if __name__ == "__main__":
    main()
