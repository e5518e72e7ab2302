"""What `mmdlr` shows on the terminal: one progress bar per stage, with counts and ETA, and one line when
the stage ends; warnings; nothing else unless ``--verbose``.

Every log record at INFO and above (mmdlr's own, the bundle's per-epoch metrics, PyRadiomics, MONAI,
Ignite, a Dask cluster) goes to ``RUN/logs/mmdlr.log`` of a run (:class:`RunLogHandler`); the terminal shows
records of :data:`summary` (the stage lines) and warnings, all records with ``--verbose``, warnings only with
``-q``. A Dask cluster's own records (``distributed``: its workers' start, stop and reconnection notices)
reach the terminal only with ``--verbose``: what goes wrong in a task comes back as that task's error.
Loops that count work call :func:`track` or :func:`work`: inside a stage they advance the stage's bar,
elsewhere (``mmdlr crop``, ``mmdlr analyze``, ...) a bar of their own.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

summary = logging.getLogger("mmdlr.summary")  # the lines a person reads at the default verbosity
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# mmdlr runs its bundle configs with logging_file=False on purpose (it routes their logs itself)
IGNORED_MESSAGES = ("Logging file is set to False, skipping logging.",)
T = TypeVar("T")
_stage_bar: _StageBar | None = None  # the stage now running, if any


class TerminalHandler(logging.Handler):
    """Writes records to the current ``sys.stderr`` through tqdm, so they never tear a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class RunLogHandler(logging.FileHandler):
    """Every record into ``RUN/logs/mmdlr.log`` (appended), once the run folder exists: a run refused before
    its first stage writes nothing."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        super().__init__(self.run_dir / "logs" / "mmdlr.log", encoding="utf-8", delay=True)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            if not self.run_dir.is_dir():
                return
            (self.run_dir / "logs").mkdir(exist_ok=True)
        super().emit(record)


def _shown(quiet: bool) -> Callable[[logging.LogRecord], bool]:
    def shown(record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] == "distributed":
            return False
        return record.levelno >= logging.WARNING or (not quiet and record.name == summary.name)
    return shown


def _not_ignored(record: logging.LogRecord) -> bool:
    return record.getMessage() not in IGNORED_MESSAGES


def configure_terminal(quiet: bool = False, verbose: bool = False) -> None:
    """Route every record to the root logger (INFO and above) and show on stderr what the verbosity asks for."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [h for h in root.handlers if isinstance(h, TerminalHandler)]:
        root.removeHandler(handler)
    handler = TerminalHandler(logging.INFO)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    handler.addFilter(_not_ignored)
    if not verbose:
        handler.addFilter(_shown(quiet))
    root.addHandler(handler)
    route_library_loggers()


def route_library_loggers() -> None:
    """Loggers that print on their own (MONAI's ``get_logger``: a stdout handler, no propagation) hand their
    records to the root logger instead, so they reach the run's log and follow the verbosity."""
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate and logger.name.startswith("monai"):
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True


@contextmanager
def run_log(run_dir: str | Path) -> Iterator[Path]:
    """While open, every record also goes to ``RUN/logs/mmdlr.log`` (see :class:`RunLogHandler`)."""
    handler = RunLogHandler(run_dir)
    handler.addFilter(_not_ignored)
    logging.getLogger().addHandler(handler)
    try:
        yield Path(handler.baseFilename)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


class _StageBar:
    """The running stage's bar, the units of work counted on it and their number."""

    def __init__(self, name: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, desc=f"{name:<10}", unit="step", leave=False, disable=not enabled,
                        dynamic_ncols=True)
        self.units: set[str] = set()
        self.count = 0

    def add(self, total: int, description: str, unit: str) -> None:
        self.units.add(unit)
        self.bar.total += total
        self.bar.unit = self.unit
        self.bar.set_postfix_str(description)

    def advance(self, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)

    @property
    def unit(self) -> str:
        return next(iter(self.units)) if len(self.units) == 1 else "step"


@contextmanager
def stage_progress(name: str, enabled: bool = True) -> Iterator[None]:
    """One bar for stage ``name`` that every :func:`work` inside advances; then one :data:`summary` line with
    the count and the time taken."""
    global _stage_bar
    route_library_loggers()
    start = time.perf_counter()
    stage = _StageBar(name, enabled)
    outer, _stage_bar = _stage_bar, stage
    try:
        yield
    finally:
        _stage_bar = outer
        stage.bar.close()
    counted = f"{stage.count:,} {stage.unit}s, " if stage.units else ""
    summary.info("%-10s done: %s%.1f s", name, counted, time.perf_counter() - start)


@contextmanager
def work(total: int, description: str, unit: str = "item", enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for ``total`` units of work: on the running stage's bar (whose total grows by ``total``),
    else on a bar of its own, shown when ``enabled``."""
    from tqdm.auto import tqdm

    stage = _stage_bar
    if stage is None:
        with tqdm(total=total, desc=description, unit=unit, disable=not enabled, dynamic_ncols=True) as own:
            yield own.update
        return
    stage.add(total, description, unit)
    yield stage.advance


def track(items: Iterable[T], total: int, description: str, unit: str = "item", enabled: bool = True) -> Iterator[T]:
    """``items``, counted by :func:`work` as they come."""
    with work(total, description, unit, enabled) as advance:
        for item in items:
            yield item
            advance(1)


class EpochProgress:
    """An Ignite handler (the bundle's ``train.json``): the trainer's epochs counted by :func:`work`, instead of
    a log line per epoch on the terminal."""

    def __init__(self, description: str = "training"):
        self.description = description
        self._advance: Callable[[int], None] | None = None
        self._work = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self._advance and self._advance(1))
        engine.add_event_handler(Events.COMPLETED, self._finished)

    def _started(self, engine) -> None:
        self._work = work(engine.state.max_epochs - engine.state.epoch, self.description, "epoch")
        self._advance = self._work.__enter__()

    def _finished(self, engine) -> None:
        if self._work is not None:
            self._work.__exit__(None, None, None)
        self._work = self._advance = None
