"""Generate preference pairs for math or code: `python generate_preference_data.py --config-name=math`."""

import hydra
from omegaconf import DictConfig

from reward_transfer.cli import entry_point
from reward_transfer.generation import generate_preference_data


@hydra.main(version_base="1.3", config_path="configs/generate_preference_data", config_name=None)
def main(cfg: DictConfig) -> None:
    with entry_point():
        generate_preference_data(cfg)


if __name__ == "__main__":
    main()
