"""Outputs get the user's umask (0644 files, 0755 folders by default), as plain open/mkdir would give."""

from __future__ import annotations

import os
import stat

import pytest

from mmdlr.atomic import atomic_path, write_text
from mmdlr.cli.main import main


@pytest.fixture(params=[(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], ids=["umask022", "umask077"])
def umask(request):
    """(file mode, folder mode) expected under the umask set for the test."""
    mask, file_mode, folder_mode = request.param
    previous = os.umask(mask)
    yield file_mode, folder_mode
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_crop_outputs_follow_the_umask(small_cohort, tmp_path, umask):
    file_mode, folder_mode = umask
    assert main(["-q", "crop", str(small_cohort), "--out", str(tmp_path / "run")]) == 0
    written = list((tmp_path / "run").rglob("*"))
    assert any(path.name == "roi_index.csv" for path in written) and any(path.name == "roi.json" for path in written)
    assert not [path for path in written if path.name.endswith(".tmp")]
    for path in written:
        assert mode(path) == (folder_mode if path.is_dir() else file_mode), path


def test_atomic_files_and_folders_follow_the_umask(tmp_path, umask):
    file_mode, folder_mode = umask
    assert mode(write_text("<html></html>", tmp_path / "report.html")) == file_mode
    with atomic_path(tmp_path / "models", directory=True) as temp:
        (temp / "model.joblib").write_bytes(b"x")
    assert mode(tmp_path / "models") == folder_mode and mode(tmp_path / "models" / "model.joblib") == file_mode
    write_text("again", tmp_path / "report.html")  # replacing keeps the mode
    assert mode(tmp_path / "report.html") == file_mode
