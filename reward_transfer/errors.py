"""Expected failures (bad input, bad config) reported as one line with exit code 1, no traceback."""

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ENVIRONMENT_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


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
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRORS:
            raise
        # A full disk or a permission the stage's own early checks could not foresee: the environment, not a bug.
        where = f" {err.filename}" if err.filename else ""
        print(f"error: cannot write{where}: {err.strerror}", file=sys.stderr, flush=True)
        sys.exit(1)
