"""The main job: the study's whole grid, then the report — `python reproduce.py [profile=paper] [dry_run=true]`.

See docs/reproduce.md: profiles, only=/skip=, resuming, the run folder.
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("reproduce", default="config", doc=__doc__)
