"""Process set-up shared by the local pool's processes and Celery's pool processes."""

import ctypes
import signal
import sys


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies.

    A pool process must not outlive its worker or `serve`: it would go on training an attempt
    that the lease has handed to a new run."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
