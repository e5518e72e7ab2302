"""Worker processes: Dask scale-out (a running scheduler, or a local cluster) and loky workers that end
with the process that started them.

A LocalCluster's worker processes already exit when their parent dies. loky's workers do not: a busy
or idle worker outlives a parent killed by SIGTERM or SIGKILL (for up to loky's 300 s idle timeout,
or for as long as its task runs). :func:`workers_exit_with_parent` gives every loky worker a watch on
its parent, and :func:`signals_interrupt` turns SIGTERM/SIGHUP into an exception that unwinds the stack,
so joblib stops its workers and Dask clients close their clusters.

The local cluster's workers print nothing themselves (:func:`dask_setup`): their log records go to this
process (``Client.forward_logging``), so they reach the run's log and follow ``mmdlr``'s verbosity.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

from joblib import Parallel, effective_n_jobs, parallel_config, register_parallel_backend
from joblib._parallel_backends import LokyBackend
from joblib.externals.loky.process_executor import TerminatedWorkerError

from mmdlr.errors import WorkerKilledError
from mmdlr.terminal import track


log = logging.getLogger(__name__)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_held: list[int] | None = None  # signals received inside signals_held()
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"  # glibc: free memory above this at the heap's top is returned at once
_warned_trimming: set[str | None] = set()  # clusters named in dask_client's warning


class Terminated(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that the stack unwinds."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    if _held is not None:
        _held.append(signum)
        return
    raise Terminated(signum)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While open (in the main thread; elsewhere a no-op), SIGINT, SIGTERM and SIGHUP raise :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold the signals of :func:`signals_interrupt` until the block ends, then raise the first."""
    global _held
    outer, _held = _held, []
    try:
        yield
    finally:
        held, _held = _held, outer
    if held:
        raise Terminated(held[0])


@contextmanager
def dask_client(address: str | None = None, n_workers: int = 2) -> Iterator[object]:
    """Connect to the scheduler at ``address``, or start a local process cluster; closed on exit.

    The local cluster's workers keep glibc's own malloc settings: Dask's nannies set ``MALLOC_TRIM_THRESHOLD_``
    (65536) in their workers, which hands freed memory back to the system at once, so that the next array's pages
    are faulted in again: PyRadiomics then spends 7 times the system time and runs 1.3 times longer
    (docs/benchmarks.md, section 7). A cluster started elsewhere is only checked for it, with a warning."""
    import dask
    from dask.distributed import Client

    client = None
    try:
        with signals_held():  # a cluster interrupted while starting cannot be closed
            if address:
                client = Client(address)
            else:
                with dask.config.set({f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM}": None}):
                    client = Client(n_workers=max(n_workers, 1), threads_per_worker=1, preload=[__name__])
                client.forward_logging("distributed")
        if sum(client.nthreads().values()) == 1:  # joblib sends tasks to a cluster of 2 threads or more only
            log.warning("the Dask cluster %s has one worker thread, so its tasks run in this process instead: %s",
                        address or "started here", "give it more workers or threads" if address else
                        "set parallel.n_jobs (radiomics.n_jobs for radiomics) to 2 or more")
        trimming = sorted({value for value in client.run(malloc_trim_threshold).values() if value is not None})
        if trimming and address not in _warned_trimming:  # once per cluster and process: each stage connects
            _warned_trimming.add(address)
            log.warning("the workers of the Dask cluster %s return freed memory to the system at once (%s=%s), "
                        "which made radiomics 1.3 times slower in mmdlr's benchmark: %s", address or "started here",
                        MALLOC_TRIM, ",".join(trimming),
                        f"start them with DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{{'{MALLOC_TRIM}': None}}\" "
                        "in their environment (Dask's nannies set it otherwise)" if address else
                        f"unset {MALLOC_TRIM} in this environment")
        yield client
    finally:
        if client is not None:
            client.close()


def malloc_trim_threshold() -> str | None:
    """This process's ``MALLOC_TRIM_THRESHOLD_`` (run on Dask workers by :func:`dask_client`)."""
    return os.environ.get(MALLOC_TRIM)


def dask_setup(worker) -> None:
    """Dask preload of the local cluster's workers: their ``distributed`` loggers print nothing (they are
    forwarded), and so do the exceptions Python can only ignore (a worker's own Client, deleted after the
    cluster went down): they are logged instead."""
    for name in [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "distributed"]:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
            logger.addHandler(logging.NullHandler())  # not Python's last-resort handler, which prints
    logging.raiseExceptions = False  # a record that cannot be forwarded any more (shutting down) is dropped
    sys.unraisablehook = _log_unraisable


def _log_unraisable(unraisable) -> None:
    logging.getLogger("distributed.worker").error(
        "%s %r", unraisable.err_msg or "Exception ignored in", unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))


def run_here(function, *arguments):
    """``function(*arguments)`` with the joblib calls inside it (LassoCV's path, ``cross_val_predict``) run
    here, one after another, as they do in a loky worker. A Dask task runs under joblib's dask backend, so
    without this each of those calls would go back to the cluster as many tiny tasks, each shipping its data."""
    with parallel_config(backend="sequential"):
        return function(*arguments)


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Start a daemon thread that ends this process once ``parent_pid`` is no longer its parent (the
    parent died, however, and this process was re-parented)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ordered_results(jobs: list, description: str, unit: str, progress: bool = True,
                    names: Sequence[str] | None = None) -> list:
    """The results of joblib ``jobs`` (``joblib.delayed`` calls) under the active ``parallel_config``, in order,
    counted as they come. Interrupted or failing, it stops the workers before it returns: joblib would let
    the queued tasks run on until its generator is collected, writing files after the caller cleaned up.

    A worker the system ends (out of memory, a crash in a library) raises :class:`WorkerKilledError` naming
    the jobs that may have been running (``names``, one per job, e.g. ``us: patient P0012``): those after the
    last result, up to the number joblib hands out ahead (``pre_dispatch``, 2 per worker).
    """
    outputs, results = Parallel(return_as="generator")(jobs), []
    try:
        results.extend(track(outputs, len(jobs), description, unit, progress))
        return results
    except TerminatedWorkerError as error:
        ahead = 2 * effective_n_jobs()  # joblib's default pre_dispatch, "2 * n_jobs"
        suspects = list((names or [f"{unit} {index + 1}" for index in range(len(jobs))])[len(results):][:ahead])
        codes = re.search(r"exit codes of the workers are (\{[^}]*\})", str(error))
        raise WorkerKilledError(
            f"{description}: the system ended a worker process (exit {codes[1] if codes else 'unknown'}; SIGKILL "
            f"is usually memory running out) while it worked on one of: {', '.join(suspects)}; check those files, "
            "or use fewer processes (parallel.n_jobs, --n-jobs) or a lower io.max_decoded_mb", suspects) from error
    finally:
        if len(results) < len(jobs):  # interrupted or failing
            with warnings.catch_warnings(action="ignore"):  # joblib's note that it cancelled the tasks
                outputs.close()


def workers_exit_with_parent() -> None:
    """Make joblib's ``loky`` backend (its default, which scikit-learn uses too) start workers that run
    :func:`exit_with_parent` for this process, for every ``Parallel`` call from now on."""
    register_parallel_backend("loky", partial(LokyBackend, initializer=exit_with_parent, initargs=(os.getpid(),)))
