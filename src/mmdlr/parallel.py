"""Worker processes: Dask scale-out (a running scheduler, or a local cluster) and loky workers that end
with the process that started them.

A LocalCluster's nannies already exit when their parent dies. loky's workers do not: a busy or idle
worker outlives a parent killed by SIGTERM or SIGKILL (for up to loky's 300 s idle timeout, or for
as long as its task runs). :func:`workers_exit_with_parent` gives every loky worker a watch on its parent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from joblib import register_parallel_backend
from joblib._parallel_backends import LokyBackend


@contextmanager
def dask_client(address: str | None = None, n_workers: int = 2) -> Iterator[object]:
    """Connect to the scheduler at ``address``, or start a local process cluster; closed on exit."""
    from dask.distributed import Client

    client = Client(address) if address else Client(n_workers=max(n_workers, 1), threads_per_worker=1)
    try:
        yield client
    finally:
        client.close()


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Start a daemon thread that ends this process once ``parent_pid`` is no longer its parent (the
    parent died, however, and this process was re-parented)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def workers_exit_with_parent() -> None:
    """Make joblib's ``loky`` backend (its default, which scikit-learn uses too) start workers that run
    :func:`exit_with_parent` for this process, for every ``Parallel`` call from now on."""
    register_parallel_backend("loky", partial(LokyBackend, initializer=exit_with_parent, initargs=(os.getpid(),)))
