"""Shared fixtures. Tests never reach the network: the Hub libraries are forced offline here."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny offline LM and RM of `python -m reward_transfer.tiny`, built once per test session."""
    from reward_transfer.tiny import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("tiny"))
