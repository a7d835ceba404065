"""Supervised fine-tuning of a causal LM on a domain's reference solutions (TRL SFTTrainer), the base of its
ground-truth reward model: `python train_sft_model.py --config-name=math`.

accelerate launch --config_file=deepspeed/1_1GPU.yaml train_sft_model.py --config-name=code
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("train_sft_model", doc=__doc__)
