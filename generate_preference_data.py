"""Generate preference pairs for math or code: `python generate_preference_data.py --config-name=math`."""

import hydra
from omegaconf import DictConfig

from reward_transfer.errors import exit_on_user_error
from reward_transfer.generation import generate_preference_data


@hydra.main(version_base="1.3", config_path="configs/generate_preference_data", config_name=None)
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        generate_preference_data(cfg)


if __name__ == "__main__":
    main()
