"""The main job: the study's whole grid, then the report — `python reproduce.py [profile=paper] [dry_run=true]`.

See docs/reproduce.md: profiles, only=/skip=, resuming, the run folder.
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.errors import exit_on_user_error
from reward_transfer.reproduction import reproduce


@hydra.main(version_base="1.3", config_path="configs/reproduce", config_name="config")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        reproduce(cfg)


if __name__ == "__main__":
    main()
