"""Scale-out on Dask: a client for joblib's dask backend (a running scheduler, or a local cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dask_client(address: str | None = None, n_workers: int = 2) -> Iterator[object]:
    """Connect to the scheduler at ``address``, or start a local process cluster; closed on exit."""
    from dask.distributed import Client

    client = Client(address) if address else Client(n_workers=max(n_workers, 1), threads_per_worker=1)
    try:
        yield client
    finally:
        client.close()
