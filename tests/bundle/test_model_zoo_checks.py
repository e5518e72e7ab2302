"""The bundle passes the MONAI model zoo's own checks, run as its CI runs them (Project-MONAI/model-zoo,
``ci/verify_bundle.py``, mode "full"): large files in place, required files, version and changelog,
``verify_metadata`` against the official schema, ``verify_net_in_out`` and ``ckpt_export`` of
``models/model.pt``, then the exported TorchScript gives the eager network's logits.

The published checkpoint is a real one: ``train.json`` with its defaults (ResNet-50, 224x224; random
initial weights and one epoch to keep it short). The schema cannot be downloaded here, so
``verify_metadata`` reads the offline copy in ``../shared/monai`` (see the README beside it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser, ckpt_export, download_large_files, verify_metadata, verify_net_in_out

from mmdlr.deep import DeepClassifier
from mmdlr.pipeline.bundle import run_bundle_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"
NET_ID = "network_def"  # verify_bundle._get_net_id
INFERENCE = "configs/inference.json"
needs_schema = pytest.mark.skipif(not SCHEMA.is_file(), reason=f"offline copy of the bundle schema not found at {SCHEMA}")


@pytest.fixture(scope="module")
def trained_checkpoint(small_cohort, tmp_path_factory) -> Path:
    """model.pt as train.json writes it with the bundle's default network settings."""
    out = tmp_path_factory.mktemp("zoo_train")
    run_bundle_config("train", "train", manifest=str(small_cohort), modality="us", output_dir=str(out),
                      weights="none", max_epochs=1, batch_size=4)
    return out / "models" / "us" / "model.pt"


def published_bundle(tmp_path: Path, checkpoint: Path) -> Path:
    """A copy of bundle/ in the zoo's layout (models/<bundle>) with the checkpoint where large_files.yml puts
    it, as the zoo's CI has it after downloading the large files."""
    bundle = tmp_path / "models" / "mmdlr_breast_deep_radiomics"
    shutil.copytree(REPO / "bundle", bundle)
    large_files = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    assert [entry["path"] for entry in large_files] == ["models/model.pt"]
    shutil.copyfile(checkpoint, bundle / large_files[0]["path"])
    download_large_files(bundle_path=str(bundle))  # a file in place is kept: no download
    return bundle


def verify_directory(bundle: Path) -> None:
    """verify_bundle_directory: the necessary and the preferred files."""
    for necessary in ("configs/metadata.json", "LICENSE", "models/model.pt", INFERENCE):
        assert (bundle / necessary).is_file(), necessary


def verify_version(bundle: Path) -> None:
    """verify_version_changes (without the zoo's model_info.json of already published versions)."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]


def verify_torchscript(bundle: Path) -> Path:
    """verify_bundle.verify_torchscript: ckpt_export of models/model.pt with network_def of inference.json."""
    exported = bundle / "models" / "verify_model.ts"
    ckpt_export(net_id=NET_ID, filepath=str(exported), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=str(bundle / "configs" / "metadata.json"), config_file=str(bundle / INFERENCE),
                bundle_root=str(bundle))
    return exported


@needs_schema
def test_bundle_passes_the_model_zoo_checks(trained_checkpoint, tmp_path):
    bundle = published_bundle(tmp_path, trained_checkpoint)
    verify_directory(bundle)
    verify_version(bundle)
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA))
    verify_net_in_out(net_id=NET_ID, meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / INFERENCE), bundle_root=str(bundle))
    exported = verify_torchscript(bundle)

    extra_files = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(exported), _extra_files=extra_files)
    assert json.loads(extra_files["metadata.json"])["version"] == json.loads(
        (bundle / "configs" / "metadata.json").read_text())["version"]
    parser = ConfigParser()
    parser.read_config(str(bundle / INFERENCE))
    parser.update({"bundle_root": str(bundle), "ckpt_path": str(bundle / "models" / "model.pt"), "device": "cpu"})
    eager = parser.get_parsed_content("network").eval()
    assert torch.equal(eager.head.weight, torch.load(trained_checkpoint, weights_only=True)["head.weight"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-5)


@needs_schema
def test_metadata_fails_the_schema_when_a_required_field_is_missing(tmp_path):
    metadata = json.loads((REPO / "bundle" / "configs" / "metadata.json").read_text())
    del metadata["network_data_format"]["inputs"]["image"]["value_range"]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="value_range"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA))


def test_zoo_export_of_a_checkpoint_with_other_settings_says_which(tmp_path):
    """The zoo exports models/model.pt with the configs' defaults; a published network of other settings
    is refused with the settings named, not exported with missing weights."""
    other = tmp_path / "efficientnet.pt"
    torch.save(DeepClassifier("efficientnet_lite0", spatial_size=[64, 64]).state_dict(), other)
    bundle = published_bundle(tmp_path, other)
    with pytest.raises(RuntimeError, match="trained with backbone 'efficientnet_lite0', spatial_size \\[64, 64\\]"):
        verify_torchscript(bundle)
    assert not os.path.exists(bundle / "models" / "verify_model.ts")
