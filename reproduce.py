"""The main job: the study's whole grid, then the report — `python reproduce.py [profile=paper] [dry_run=true]`.

See docs/reproduce.md: profiles, only=/skip=, resuming, the run folder.
"""

import hydra
from omegaconf import DictConfig

from reward_transfer.cli import entry_point
from reward_transfer.reproduction import reproduce


@hydra.main(version_base="1.3", config_path="configs/reproduce", config_name="config")
def main(cfg: DictConfig) -> None:
    with entry_point():
        reproduce(cfg)


if __name__ == "__main__":
    main()
