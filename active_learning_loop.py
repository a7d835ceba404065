"""Run the active-learning rounds (select → train → merge → eval) for one domain and strategy; resumable.

python active_learning_loop.py --config-name=demo_math                  # tiny, offline, CPU
python active_learning_loop.py --config-name=math strategy=random       # the paper's random baseline (GPU)
"""

from reward_transfer.cli import run_hydra_script

if __name__ == "__main__":
    run_hydra_script("active_learning_loop", doc=__doc__)
