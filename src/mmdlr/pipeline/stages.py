"""Resumable stages: each records a key (inputs + config slice + code version) once its outputs are
complete; a rerun with the same key skips it, ``force`` reruns it."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmdlr import __version__
from mmdlr.atomic import write_text
from mmdlr.terminal import stage_progress, summary

log = logging.getLogger("mmdlr")
SOURCE_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("validate", "split", "crop", "deep", "radiomics", "analysis", "baselines", "gradcam", "report")


def code_version() -> str:
    """Package version plus a hash of every source file, so any code change reruns the stages."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(SOURCE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(SOURCE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def stage_key(*parts: object) -> str:
    """A stable hash of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRecord:
    """What a finished stage left: its key, outputs and time."""

    name: str
    key: str
    outputs: list[str]
    seconds: float
    skipped: bool = False
    details: dict = field(default_factory=dict)


class StageRunner:
    """Runs named stages under ``out_dir``, skipping those whose key and outputs are already there; each with
    one progress bar (when ``progress``) and one summary line."""

    def __init__(self, out_dir: str | Path, force: Iterable[str] = (), code: str | None = None,
                 progress: bool = True):
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.records_dir = self.out_dir / "stages"
        self.force = set(force)
        self.code = code or code_version()
        self.records: dict[str, StageRecord] = {}

    def _record_path(self, name: str) -> Path:
        return self.records_dir / f"{name}.json"

    def finished(self, name: str, key: str) -> StageRecord | None:
        path = self._record_path(name)
        if name in self.force or not path.is_file():
            return None
        record = StageRecord(**json.loads(path.read_text()))
        if record.key != key or not all((self.out_dir / p).exists() for p in record.outputs):
            return None
        return record

    def run(self, name: str, key_parts: object, action: Callable[[], tuple[list[Path], dict] | list[Path]]) -> StageRecord:
        """Run ``action`` (returning its output paths, optionally with details) unless already done."""
        key = stage_key(name, key_parts, self.code)
        done = self.finished(name, key)
        if done is not None:
            summary.info("%-10s up to date (reused)", name)
            self.records[name] = StageRecord(**(asdict(done) | {"skipped": True}))
            return self.records[name]
        log.info("stage %-10s running", name)
        start = time.perf_counter()
        with stage_progress(name, self.progress):
            result = action()
        outputs, details = result if isinstance(result, tuple) else (result, {})
        record = StageRecord(name=name, key=key, seconds=round(time.perf_counter() - start, 3),
                             outputs=[Path(p).resolve().relative_to(self.out_dir.resolve()).as_posix()
                                      for p in outputs], details=details)
        write_text(json.dumps(asdict(record), indent=1), self._record_path(name))
        self.records[name] = record
        return record
