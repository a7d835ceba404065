"""What every entry-point script does around its work: read `.env`, report expected failures as one line."""

from collections.abc import Iterator
from contextlib import contextmanager

from dotenv import find_dotenv, load_dotenv

from reward_transfer.errors import exit_on_user_error


@contextmanager
def entry_point() -> Iterator[None]:
    """Load HF_TOKEN / WANDB_API_KEY from `.env` (the environment wins), then run with `exit_on_user_error`."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    with exit_on_user_error():
        yield
