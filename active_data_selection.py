"""Select the next active-learning pairs (one round) and write the selection state.

accelerate launch --config_file=deepspeed/1_1GPU.yaml active_data_selection.py --config-name=math_initial
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("active_data_selection", doc=__doc__)
