"""Shared fixtures. Tests never reach the network: the Hub libraries are forced offline here."""

import os
import socket

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


def free_port() -> int:
    """A free loopback port, so concurrent `accelerate launch` runs don't fight over torchrun's default 29500."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_cpu_thread():
    """Tiny models on a shared 2-core machine train several times faster with one torch thread than with two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_finish(session) -> None:
    """Start the requirement resolves (network-bound, about a minute) at once when their tests are selected,
    so they overlap the rest of the suite instead of adding to it."""
    if any(item.module.__name__ == "test_requirements" for item in session.items):
        import tempfile

        from test_requirements import start_resolutions

        folder = Path(tempfile.mkdtemp(prefix="rt-resolve-"))
        session.config.requirement_resolutions = start_resolutions(folder)
        session.config.requirement_resolution_dir = folder


def pytest_sessionfinish(session) -> None:
    import shutil

    for process, _ in getattr(session.config, "requirement_resolutions", {}).values():
        if process.poll() is None:
            process.kill()
            process.wait()
    folder = getattr(session.config, "requirement_resolution_dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
