"""Where the repository's configs and bundle live (mmdlr runs from a clone, installed editable)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
BUNDLE_DIR = REPO_ROOT / "bundle"
