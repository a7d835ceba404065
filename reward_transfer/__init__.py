"""Reward-model transfer across domains: data generation, LoRA reward-model training, evaluation,
active learning and the paper's report. Entry-point scripts live at the repository root."""
