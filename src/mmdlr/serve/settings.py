"""The server's guards, apart from the app so that `mmdlr serve --help` shows their defaults without
importing torch or FastAPI."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host header names; an IPv6 literal keeps its brackets


@dataclass(frozen=True)
class ServeSettings:
    """How the server guards itself; `mmdlr serve` has an option of the same name for each."""

    token: str | None = None
    max_upload_mb: float = 100
    max_concurrent: int = 4
    max_queue: int = 64
    max_spool_mb: float = 512
    body_timeout: float = 60
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS

    def __post_init__(self):
        if self.max_spool_mb < self.max_upload_mb:
            raise ValueError(f"--max-spool-mb ({self.max_spool_mb:g}) must be at least --max-upload-mb "
                             f"({self.max_upload_mb:g}), or no upload of the largest allowed size could be taken")
