"""The documented command lines: ``python -m monai.bundle run`` with the user-contract overrides, and torchrun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"


def bundle_run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_default_resnet50_train_then_inference(small_cohort, tmp_path):
    """Inference is not told the input size training used: it reads it from the checkpoint."""
    contract = ["--meta_file", str(CONFIGS / "metadata.json"), "--manifest", str(small_cohort), "--modality", "us",
                "--output_dir", str(tmp_path)]
    bundle_run("--config_file", str(CONFIGS / "train.json"), *contract, "--spatial_size", "[64,64]",
               "--max_epochs", "1", "--weights", "none")
    assert (tmp_path / "models" / "us" / "model.pt").exists()
    bundle_run("--config_file", str(CONFIGS / "inference.json"), *contract, "--weights", "none")
    table = pd.read_csv(tmp_path / "deep_us.csv")
    assert table.filter(like="deep_").shape[1] == 2048  # ResNet-50 average-pool features, as in the paper


@pytest.mark.slow
def test_multi_gpu_config_runs_distributed_on_cpu(small_cohort, tmp_path):
    """torchrun with 2 processes; without CUDA the config falls back to the gloo backend on CPU."""
    configs = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "--config_file", configs, "--meta_file", str(CONFIGS / "metadata.json"),
               "--manifest", str(small_cohort), "--output_dir", str(tmp_path), "--max_epochs", "2",
               "--backbone", "efficientnet_lite0", "--weights", "imagenet", "--spatial_size", "[64,64]"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "models" / "us" / "model.pt").exists()
    assert "val_auc" in result.stdout + result.stderr
