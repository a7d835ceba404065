"""Expected failures (bad input, bad config) reported as one line with exit code 1, no traceback."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A failure caused by the user's input or configuration; the message says what and where."""


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a UserError raised inside an entry point into `error: <message>` and exit code 1."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
