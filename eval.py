"""Evaluate a reward model: judgment accuracy on held-out pairs, or best-of-n reranking (`mode=best_of_n`).

accelerate launch --config_file=deepspeed/1_1GPU.yaml eval.py --config-name=math_scratch
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("eval", doc=__doc__)
