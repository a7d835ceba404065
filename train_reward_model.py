"""Train a reward model (LoRA, TRL RewardTrainer): `python train_reward_model.py --config-name=math_20k`."""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("train_reward_model", doc=__doc__)
