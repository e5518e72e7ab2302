"""Model files are skops data: a saved model predicts bit-identically after loading, and a hostile, foreign or
old (pickle) file is refused without running anything."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from mmdlr.analysis import ModelBundle, config_from_dict, load_bundle, load_feature_set, save_bundle
from mmdlr.analysis.bundle import ModelFileError, Strings
from mmdlr.analysis.fold import fit_row
from mmdlr.analysis.grid import COMBINED, EARLY, ENSEMBLE, SINGLE, STACKING, GridRow
from mmdlr.classify import CLASSIFIERS
from mmdlr.cli.main import main
from mmdlr.serve import run_folder

from .synthetic_features import write_feature_tables

# One candidate per classifier, small ensembles: the file round trip is under test, not the fit.
ONE_CANDIDATE = {
    "lr": {"C": [1.0]}, "svm": {"estimator__C": [1.0]}, "knn": {"n_neighbors": [5]},
    "rf": {"n_estimators": [20], "max_depth": [3]}, "extratrees": {"n_estimators": [20], "max_depth": [3]},
    "xgboost": {"n_estimators": [20], "max_depth": [2]}, "lightgbm": {"n_estimators": [20], "num_leaves": [7]},
}
FUSION_ROWS = {
    EARLY: GridRow("deep", "MG+US", EARLY, ("deep_mg", "deep_us")),
    COMBINED: GridRow("radiomics+deep", "Rad + DF", COMBINED, ("radiomics_mg", "radiomics_us", "deep_mg", "deep_us")),
    ENSEMBLE: GridRow("radiomics", "Ensemble", ENSEMBLE, ("radiomics_mg", "radiomics_us")),
    STACKING: GridRow("deep", "Stacking", STACKING, ("deep_mg", "deep_us")),
}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    directory = write_feature_tables(tmp_path_factory.mktemp("features"), n_patients=60, modalities=("mg", "us"),
                                     n_deep=40, missing={"mg": 0.15})
    return load_feature_set(directory)


def _fitted_bundle(row: GridRow, features, classifiers: dict) -> ModelBundle:
    config = config_from_dict({"classifiers": classifiers, "inner_folds": 2, "pca": {"deep": 4, "fused": 6}})
    outcome = fit_row(row, None, features, config, keep_model=True)
    return ModelBundle(outcome.model, row.family, row.method, outcome.classifier, 0.5,
                       {name: features.blocks[name] for name in row.blocks}, "all patients",
                       requires_all_blocks=row.kind in (SINGLE, EARLY, COMBINED))


def _round_trip(bundle: ModelBundle, features, path: Path) -> ModelBundle:
    """Save, load, and check the loaded bundle's probabilities are bit-identical on every usable patient."""
    loaded = load_bundle(save_bundle(bundle, path))
    frame = features.frame[bundle.feature_columns]
    usable = frame.dropna() if bundle.requires_all_blocks else frame
    np.testing.assert_array_equal(loaded.predict_proba(usable), bundle.predict_proba(usable))
    assert (loaded.family, loaded.method, loaded.classifier, loaded.blocks) == \
           (bundle.family, bundle.method, bundle.classifier, bundle.blocks)
    return loaded


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_every_classifier_round_trips_bit_identically(classifier, features, tmp_path):
    row = GridRow("radiomics", "US", SINGLE, ("radiomics_us",))
    bundle = _fitted_bundle(row, features, {classifier: ONE_CANDIDATE[classifier]})
    loaded = _round_trip(bundle, features, tmp_path / "us.skops")
    assert type(loaded.model.best_estimator_[-1]) is type(bundle.model.best_estimator_[-1])
    assert loaded.model.best_estimator_.memory._store == {}  # the search's fit cache is saved empty


@pytest.mark.parametrize("kind", FUSION_ROWS)
def test_every_fusion_kind_round_trips_bit_identically(kind, features, tmp_path):
    bundle = _fitted_bundle(FUSION_ROWS[kind], features, {name: ONE_CANDIDATE[name] for name in ("lr", "knn")})
    loaded = _round_trip(bundle, features, tmp_path / "fusion.skops")
    for name in ("weights_", "accuracies_"):  # pandas attributes of late fusion come back as they were
        if hasattr(bundle.model, name):
            pd.testing.assert_series_equal(getattr(loaded.model, name), getattr(bundle.model, name))
    if kind == STACKING:
        pd.testing.assert_frame_equal(loaded.model.meta_features_, bundle.model.meta_features_)
        assert isinstance(bundle.model.meta_features_, pd.DataFrame)  # saving left the fitted model as it was
    if kind == EARLY:  # its 80 column names are saved as one array each (Strings) and come back as they were
        assert '"Strings"' in zipfile.ZipFile(tmp_path / "fusion.skops").read("schema.json").decode()
        for model in (bundle.model, loaded.model):
            assert model.feature_names_in_.dtype == object and len(model.feature_names_in_) == 80
        np.testing.assert_array_equal(loaded.model.feature_names_in_, bundle.model.feature_names_in_)



def test_a_names_array_holding_no_array_is_refused_in_one_line(features, tmp_path):
    """A hostile file may set a trusted Strings node's fields to anything: restoring it fails in one line."""
    blocks = {"radiomics_us": features.blocks["radiomics_us"]}
    bundle = ModelBundle({"names": Strings(None, "list")}, "radiomics", "US", "LR", 0.5, blocks, "all patients")
    path = save_bundle(bundle, tmp_path / "us.skops")
    with pytest.raises(ModelFileError, match=f"{path} is not a model file mmdlr saved .*AttributeError"):
        load_bundle(path)

class _Payload:
    """Unpickling it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _exec_node(code: str) -> dict:
    """A skops node that runs ``exec(code)`` when the file is loaded with its types trusted."""
    arguments = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps((code,)))).read("schema.json"))
    for key in ("protocol", "_skops_version", "__id__"):
        arguments.pop(key)
    return {"__class__": "exec", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
            "content": arguments}


def _hostile_copy(model_file: Path, path: Path, marker: Path) -> Path:
    """``model_file`` with its bundle's threshold replaced by a node that creates ``marker``."""
    with zipfile.ZipFile(model_file) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "schema.json":
                schema = json.loads(content)
                schema["content"]["content"]["threshold"] = _exec_node(f"open({str(marker)!r}, 'w').close()")
                content = json.dumps(schema)
            target.writestr(name, content)
    return path


@pytest.fixture(scope="module")
def lr_model_file(features, tmp_path_factory) -> Path:
    bundle = _fitted_bundle(GridRow("radiomics", "US", SINGLE, ("radiomics_us",)), features,
                            {"lr": ONE_CANDIDATE["lr"]})
    return save_bundle(bundle, tmp_path_factory.mktemp("models") / "us.skops")


def test_a_skops_file_naming_exec_is_refused_and_its_payload_never_runs(lr_model_file, tmp_path):
    marker = tmp_path / "PWNED"
    hostile = _hostile_copy(lr_model_file, tmp_path / "us.skops", marker)
    with pytest.raises(ModelFileError, match="holds types mmdlr does not load: builtins.exec; only load run "
                                             "folders made by mmdlr"):
        load_bundle(hostile)
    assert not marker.exists()
    sio.load(hostile, trusted=sio.get_untrusted_types(file=hostile))  # trusting what the file names runs it
    assert marker.exists()


@pytest.mark.parametrize("name", ["us.skops", "us.joblib"])
def test_a_pickle_is_never_unpickled(name, tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))
    (tmp_path / name).write_bytes(payload)
    message = "re-run the analysis stage" if name.endswith(".joblib") else "is not a model file mmdlr saved"
    with pytest.raises(ModelFileError, match=message):
        load_bundle(tmp_path / name)
    assert not marker.exists()
    pickle.loads(payload)
    assert marker.exists()


def test_a_file_holding_something_else_than_a_bundle_is_refused(tmp_path):
    (tmp_path / "us.skops").write_bytes(sio.dumps({"threshold": 0.5}))
    with pytest.raises(ModelFileError, match="holds a dict, not a model"):
        load_bundle(tmp_path / "us.skops")


def _run_folder(run_dir: Path, folder: Path, model_file: str, content: bytes) -> Path:
    """A copy of ``run_dir``'s config and manifest whose only model is ``model_file`` holding ``content``."""
    (folder / "results" / "models").mkdir(parents=True)
    for name in ("provenance.json", "manifest.csv"):
        shutil.copy(run_dir / name, folder / name)
    index = pd.read_csv(run_dir / "results" / "models" / "index.csv").head(1).assign(path=model_file)
    index.to_csv(folder / "results" / "models" / "index.csv", index=False)
    (folder / "results" / "models" / model_file).write_bytes(content)
    return folder


def _test_patients(run_dir: Path, path: Path) -> Path:
    cohort = pd.read_csv(run_dir / "manifest.csv", dtype=str, keep_default_na=False)
    cohort[cohort["split"] == "test"].drop(columns=["label", "split", "group"]).to_csv(path, index=False)
    return path


def test_predict_refuses_old_and_hostile_run_folders_in_one_line(finished_run, lr_model_file, tmp_path, capsys):
    run_dir = finished_run[0].out_dir
    marker = tmp_path / "PWNED"
    hostile = _hostile_copy(lr_model_file, tmp_path / "hostile.skops", marker).read_bytes()
    manifest = _test_patients(run_dir, tmp_path / "new.csv")
    for folder, model_file, content, message in (
            ("old", "us.joblib", pickle.dumps(_Payload(marker)), "re-run the analysis stage (`mmdlr run ... "
                                                                  "--force analysis`)"),
            ("hostile", "us.skops", hostile, "holds types mmdlr does not load: builtins.exec")):
        run = _run_folder(run_dir, tmp_path / folder, model_file, content)
        assert main(["-q", "predict", "--model-dir", str(run), "--manifest", str(manifest),
                     "--out", str(tmp_path / "out.csv")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("mmdlr predict: error: ") and error.count("\n") == 1 and message in error
        assert not marker.exists()


def test_a_served_run_predicts_as_it_did_before_saving(finished_run, tmp_path, monkeypatch):
    """Every saved model, loaded from its file, gives the test patients exactly the probabilities the
    in-memory model gave them in the run; `mmdlr predict` (features computed again from the images) agrees."""
    run_dir = finished_run[0].out_dir
    models = run_dir / "results" / "models"
    index = pd.read_csv(models / "index.csv")
    assert index["path"].str.endswith(".skops").all() and not list(models.rglob("*.joblib"))
    before = pd.read_csv(run_dir / "results" / "predictions.csv", dtype={"patient_id": str})
    loaded = {}  # each model `mmdlr predict` loads from its file, by its path in the index

    def load_and_keep(path):
        loaded[Path(path).relative_to(models.resolve()).as_posix()] = bundle = load_bundle(path)
        return bundle

    monkeypatch.setattr(run_folder, "load_bundle", load_and_keep)
    out = tmp_path / "predictions.csv"
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest",
                 str(_test_patients(run_dir, tmp_path / "new.csv")), "--out", str(out)]) == 0
    predicted = pd.read_csv(out, dtype={"patient_id": str}).set_index(["model", "patient_id"])["probability"]
    assert sorted(loaded) == sorted(index["path"])
    for entry in index.itertuples():
        bundle = loaded[entry.path]
        tables = {name: pd.read_csv(run_dir / "features" / f"{name}.csv", dtype={"patient_id": str})
                  for name in bundle.blocks}
        expected = before[(before["family"] == entry.family) & (before["method"] == entry.method)]
        frame = bundle.features_from_tables(tables).loc[expected["patient_id"]]
        np.testing.assert_array_equal(bundle.predict_proba(frame), expected["probability"].to_numpy())
        served = predicted.loc["_".join(Path(entry.path).with_suffix("").parts)]
        tolerance = 1e-12 if entry.family == "radiomics" else 1e-3  # the CNN's features, computed again
        np.testing.assert_allclose(served.loc[expected["patient_id"]], expected["probability"], atol=tolerance)


def test_predict_extracts_the_peritumoral_ring_as_the_run_did(run_cohort, tmp_path):
    """A radiomics run with roi.regions=both: `mmdlr predict` crops the ring again from the images and gives
    the test patients exactly the probabilities of the run, the ring's rows included."""
    from mmdlr.paths import CONFIG_DIR
    from mmdlr.pipeline.config import load_run_config
    from mmdlr.pipeline.run import run_pipeline

    config = load_run_config(CONFIG_DIR / "paper.yaml", [
        "deep.enabled=false", "deep.baselines=[]", "roi.regions=both", "modalities=[us]",
        "classifiers={lr: {C: [1.0]}}", "inner_folds=2", "bootstrap.n=200", "parallel.n_jobs=1",
        "fusion={ensemble: false, stacking: false}"])
    run_dir = run_pipeline(run_cohort, config, tmp_path / "run", progress=False).out_dir
    before = pd.read_csv(run_dir / "results" / "predictions.csv", dtype={"patient_id": str})
    assert {"US peritumoral", "US intra+peritumoral"} <= set(before["method"])
    out = tmp_path / "predictions.csv"
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest",
                 str(_test_patients(run_dir, tmp_path / "new.csv")), "--out", str(out)]) == 0
    predicted = pd.read_csv(out, dtype={"patient_id": str}).set_index(["model", "patient_id"])["probability"]
    index = pd.read_csv(run_dir / "results" / "models" / "index.csv")
    ring_models = index[index["method"].str.contains("peritumoral")]
    assert len(ring_models) == 2
    for entry in ring_models.itertuples():
        expected = before[(before["family"] == entry.family) & (before["method"] == entry.method)]
        served = predicted.loc["_".join(Path(entry.path).with_suffix("").parts)]
        np.testing.assert_allclose(served.loc[expected["patient_id"]], expected["probability"], atol=1e-12)


def test_the_analysis_grid_workers_import_no_file_plot_or_report_library():
    """skops walks all of scikit-learn when imported (3 CPU s), matplotlib and pingouin take 1 s more: the grid's
    worker processes, which only fit, import none of them."""
    script = ("import sys, mmdlr.analysis, mmdlr.analysis.fold; "
              "print(sorted(m for m in ('skops', 'matplotlib', 'pingouin') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
