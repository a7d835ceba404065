"""Preference-data generation (stage 1): candidates from an LLM, labels from the verifiers, pairs for training.

Importing this package registers the `generate_preference_data_schema` Hydra config schema.
"""

from reward_transfer.generation.pipeline import PAIR_FEATURES, build_datasets, generate_preference_data
from reward_transfer.generation.schema import GeneratePreferenceDataConfig

__all__ = ["PAIR_FEATURES", "GeneratePreferenceDataConfig", "build_datasets", "generate_preference_data"]
