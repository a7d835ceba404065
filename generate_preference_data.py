"""Generate preference pairs for math or code: `python generate_preference_data.py --config-name=math`."""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("generate_preference_data", doc=__doc__)
