"""A domain reward model without preference data (DogeRM): the general RM's backbone interpolated toward the
domain's SFT model, its reward head kept.

python interpolate_reward_model.py --config-name=base name=math_merge_sft sft_model=eth-dl-rewards/internlm2-7b-sft-math
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("interpolate_reward_model", doc=__doc__)
