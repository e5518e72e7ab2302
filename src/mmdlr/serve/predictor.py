"""The one prediction code path of `mmdlr predict` and `mmdlr serve`: one patient's files -> saved models.

Per modality the image and masks are loaded, checked and cropped by the ROI cache's own code into a
private temporary folder, radiomics are extracted from that ROI exactly as the run did, and deep
features come from the modality's trained CNN with the bundle's inference preprocessing. Only the
feature families the requested models read are computed.

A run trained with ComBat (``harmonize.combat``) needs each patient's centre: one seen in training is
harmonised with its fitted effects, case by case; a new one (``harmonize.new_centers: estimate``) with
effects estimated from all the patients of that centre predicted together (:meth:`Predictor.predict_cases`).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mmdlr.analysis.features import block_name
from mmdlr.errors import CaseError, find_case_error
from mmdlr.fuse.late import LateFusion
from mmdlr.io.manifest import LABEL_NAMES
from mmdlr.io.readers import read_image
from mmdlr.radiomics.extract import DEFAULT_PARAMS, extract_roi, region_mask_name, roi_files
from mmdlr.roi.cache import crop_case
from mmdlr.roi.regions import region_names
from mmdlr.select.harmonize import MIN_CENTER_ROWS, assign_centers, harmonizers
from mmdlr.serve.deep import ModalityNetwork
from mmdlr.serve.run_folder import RunFolder, ServedModel
from mmdlr.serve.shift import TrainingReference

SEPARATOR = "+"


class MissingModalityError(CaseError):
    """A model (or a Grad-CAM request) needs a modality the patient's files do not include."""

    def __init__(self, message: str, missing: list[str], patient_id: str | None = None):
        self.missing = missing
        super().__init__(message, patient_id)


def _pair(modality: str) -> str:
    return f"{modality}_image and {modality}_mask"


@dataclass(frozen=True)
class CaseFiles:
    """One modality of one patient: the image (a file or a DICOM series folder) and its mask files."""

    image: Path
    masks: tuple[Path, ...]


@dataclass
class ModalityFeatures:
    """What was computed for one modality: the ROI record, feature values per family, the CNN's output."""

    roi: dict
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    cnn_probability: float | None = None
    regions: dict[str, dict[str, float]] = field(default_factory=dict)  # radiomics of other regions (roi.regions)
    shift_warning: str | None = None  # what lies outside the training distribution (mmdlr.serve.shift)


@dataclass
class CaseFeatures:
    """One patient's computed features and the models chosen for them, each with the modalities it uses."""

    patient_id: str | None
    center: str | None
    chosen: list[tuple[ServedModel, list[str]]]
    tables: dict[str, pd.DataFrame]
    computed: dict[str, ModalityFeatures]


@dataclass
class Prediction:
    """One model's answer for one patient."""

    model: str
    probability: float
    threshold: float
    modalities_used: list[str]
    per_modality: dict[str, dict]
    shift_warnings: dict[str, str] = field(default_factory=dict)  # modality -> what lies outside its training data

    @property
    def label(self) -> int:
        return int(self.probability >= self.threshold)

    @property
    def label_name(self) -> str:
        return LABEL_NAMES[self.label]

    def row(self, patient_id: str) -> dict:
        """The `mmdlr predict` CSV row."""
        return {"patient_id": patient_id, "model": self.model, "probability": self.probability,
                "label_predicted": self.label_name, "modalities_used": SEPARATOR.join(self.modalities_used)}


def check_radiomics_mask(mask: np.ndarray, params: Path, files: CaseFiles, patient_id: str | None) -> None:
    """Raise CaseError, naming the mask files, when the ROI's lesion is below what PyRadiomics accepts with
    the run's params (``minimumROIDimensions``, default 2, and ``minimumROISize``), checked as it checks them."""
    settings = (yaml.safe_load(params.read_text()) or {}).get("setting") or {}
    lesion = np.argwhere(mask == settings.get("label", 1))
    dimensions = int((np.ptp(lesion, axis=0) > 0).sum()) if len(lesion) else 0
    min_dimensions, min_size = settings.get("minimumROIDimensions", 2), settings.get("minimumROISize")
    if dimensions < min_dimensions or (min_size is not None and len(lesion) <= min_size):
        needed = f"{min_dimensions} dimensions" + (f" and more than {min_size:g} pixels" if min_size else "")
        raise CaseError(f"the lesion is too small for radiomics: {len(lesion)} pixel(s) spanning {dimensions} "
                        f"dimension(s) where the run's radiomics params ({params.name}: minimumROIDimensions, "
                        f"minimumROISize) need {needed}; send the mask of the whole lesion", patient_id,
                        ", ".join(map(str, files.masks)))


@contextmanager
def case_errors() -> Iterator[None]:
    """Re-raise the CaseError behind a transform failure (MONAI's Compose wraps it in a RuntimeError)."""
    try:
        yield
    except CaseError:
        raise
    except Exception as error:
        cause = find_case_error(error)
        if cause is None:
            raise
        raise cause from error


class Predictor:
    """Loads a finished run once; predicts any number of patients, from any number of threads."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        config = folder.config
        self.radiomics_params = {dim: Path(getattr(config.radiomics, f"params_{dim}") or DEFAULT_PARAMS[dim])
                                 for dim in ("2d", "3d")}
        torch_lock = threading.Lock()  # torch calls share one network per modality
        cnn_modalities = {modality for model in folder.models.values() for modality in model.cnn_modalities}
        self.networks = {modality: ModalityNetwork(config, folder.deep_dir, modality, torch_lock)
                         for modality in folder.modalities if modality in cnn_modalities}
        self.reference = TrainingReference.from_run_dir(folder.path, folder.modalities)
        self.harmonizers = {name: [harmonizer for harmonizer in harmonizers(model.bundle.model)
                                   if hasattr(harmonizer, "centers_")] for name, model in folder.models.items()}
        self.centers_lock = threading.Lock()  # the harmonizers' side data holds the centres of one call at a time

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> "Predictor":
        return cls(RunFolder.open(run_dir))

    @property
    def models(self) -> dict[str, ServedModel]:
        return self.folder.models

    def usable_modalities(self, model: ServedModel, available: Sequence[str],
                          patient_id: str | None = None) -> list[str]:
        """The model's modalities among ``available``; raise MissingModalityError if it cannot answer."""
        used = [modality for modality in model.modalities if modality in available]
        missing = [modality for modality in model.modalities if modality not in available]
        if missing and model.needs_every_modality:
            raise MissingModalityError(f"model {model.name} needs modality {', '.join(missing)} (files "
                                       f"{'; '.join(map(_pair, missing))}), which is missing", missing, patient_id)
        if not used:
            raise MissingModalityError(f"model {model.name} needs at least one of its modalities "
                                       f"{', '.join(model.modalities)}; none was given", missing, patient_id)
        return used

    def training_centers(self, model: ServedModel) -> list[str]:
        """The centres every ComBat step of ``model`` was fitted on (a late fusion's base models see only the
        patients with their modality); empty when the model harmonises nothing."""
        fitted = [set(map(str, harmonizer.centers_)) for harmonizer in self.harmonizers[model.name]]
        return sorted(set.intersection(*fitted)) if fitted else []

    def predict(self, files: Mapping[str, CaseFiles], models: Sequence[str] | None = None,
                patient_id: str | None = None, center: str | None = None) -> list[Prediction]:
        """Predictions of one patient by the named models (all must be usable), or by every model the files
        allow. ``patient_id`` names the patient in errors; ``center`` is their centre (site or scanner), which a
        run trained with ComBat needs, and which must be one seen in training here (a new centre needs
        :meth:`predict_cases` with others of it)."""
        return self.predict_cases([self._case_features(files, models, patient_id, center, alone=True)])[0]

    def features(self, files: Mapping[str, CaseFiles], models: Sequence[str] | None = None,
                 patient_id: str | None = None, center: str | None = None) -> CaseFeatures:
        """One patient's features for the named models (all must be usable) or every model the files allow,
        to predict with :meth:`predict_cases`."""
        return self._case_features(files, models, patient_id, center, alone=False)

    def choose(self, files: Mapping[str, CaseFiles], models: Sequence[str] | None = None,
               patient_id: str | None = None) -> list[tuple[ServedModel, list[str]]]:
        """The named models (all must be usable), or every model the files allow, each with the modalities it
        uses."""
        unknown = sorted(set(files) - set(self.folder.modalities))
        if unknown:
            raise ValueError(f"modality {', '.join(unknown)} unknown to this run ({', '.join(self.folder.modalities)})")
        if models is not None:
            return [(model, self.usable_modalities(model, list(files), patient_id))
                    for model in map(self.folder.model, models)]
        chosen = []
        for model in self.models.values():
            try:
                chosen.append((model, self.usable_modalities(model, list(files), patient_id)))
            except MissingModalityError:
                continue
        return chosen

    def check_cases(self, patients: Sequence[tuple[Mapping[str, CaseFiles], str, str | None]],
                    models: Sequence[str] | None = None) -> None:
        """Raise CaseError, before any feature is computed, for the first patient (files, id, centre) that a named
        model cannot use, or whose centre a ComBat-harmonised model cannot place when :meth:`predict_cases`
        predicts them all."""
        chosen = [self.choose(files, models, patient_id) for files, patient_id, _ in patients]
        for name in dict.fromkeys(model.name for models_of in chosen for model, _ in models_of):
            model, members = self.folder.model(name), []
            for index, ((_, patient_id, center), models_of) in enumerate(zip(patients, chosen)):
                if any(other.name == name for other, _ in models_of):
                    self._check_center(model, center, patient_id, alone=False)
                    members.append((index, patient_id, center))
            self._center_groups(model, members)

    def _case_features(self, files: Mapping[str, CaseFiles], models: Sequence[str] | None, patient_id: str | None,
                       center: str | None, alone: bool) -> CaseFeatures:
        chosen = self.choose(files, models, patient_id)
        for model, _ in chosen:
            self._check_center(model, center, patient_id, alone)
        families: dict[str, set[str]] = {}
        for model, used in chosen:
            for modality in used:
                families.setdefault(modality, set()).update(model.families(modality))
        with tempfile.TemporaryDirectory(prefix="mmdlr-predict-") as work:
            computed = {modality: self._modality_features(modality, files[modality], needed, Path(work), patient_id)
                        for modality, needed in families.items()}
        tables = {block_name(family, modality): pd.DataFrame([{"patient_id": patient_id, **values}])
                  for modality, result in computed.items() for family, values in result.features.items()}
        tables |= {block_name("radiomics", modality, region): pd.DataFrame([{"patient_id": patient_id, **values}])
                   for modality, result in computed.items() for region, values in result.regions.items()}
        return CaseFeatures(patient_id, center, chosen, tables, computed)

    def _check_center(self, model: ServedModel, center: str | None, patient_id: str | None, alone: bool) -> None:
        """Raise CaseError unless ``model`` (if trained with ComBat) can harmonise a patient of ``center``:
        given, and seen in training or, with ``new_centers: estimate``, not predicted ``alone``."""
        known = self.training_centers(model)
        if not known or center in known:
            return
        if not center:
            raise CaseError(f"model {model.name} was trained with ComBat harmonisation by centre and needs the "
                            f"patient's centre (site or scanner; training centres: {', '.join(known)}): add a "
                            "center column to the manifest, or send params {\"center\": ...} to the server",
                            patient_id)
        if self.harmonizers[model.name][0].new_centers == "refuse":
            raise CaseError(f"centre {center!r} was not among the training centres of model {model.name} "
                            f"({', '.join(known)}) and the run refuses new centres (harmonize.new_centers: refuse): "
                            "train on it", patient_id)
        if alone:
            raise CaseError(_new_center_alone(model, center, known), patient_id)

    def predict_cases(self, cases: Sequence[CaseFeatures]) -> list[list[Prediction]]:
        """Each case's predictions, by its chosen models in their order. A model answers case by case, so a
        probability does not depend on the other cases (bit for bit what serve gives), except that ComBat
        harmonises a centre not seen in training by effects estimated from all the cases of it together."""
        answers: list[dict[str, Prediction]] = [{} for _ in cases]
        for name in dict.fromkeys(model.name for case in cases for model, _ in case.chosen):
            model = self.folder.model(name)
            members = [(index, case.patient_id, case.center) for index, case in enumerate(cases)
                       if any(chosen.name == name for chosen, _ in case.chosen)]
            for group in self._center_groups(model, members):
                for index, prediction in zip(group, self._apply(model, [cases[index] for index in group])):
                    answers[index][name] = prediction
        return [[answers[index][model.name] for model, _ in case.chosen] for index, case in enumerate(cases)]

    def _center_groups(self, model: ServedModel, members: list[tuple[int, str | None, str | None]]) -> list[list[int]]:
        """The indices of ``members`` (index, patient id, centre) that ``model`` predicts in one call: each alone,
        but all of a centre its ComBat did not see in training together (CaseError for fewer than 2)."""
        known = self.training_centers(model)
        groups: dict[tuple, list[int]] = {}
        for index, _, center in members:
            new = bool(known) and center not in known
            groups.setdefault(("center", center) if new else ("case", index), []).append(index)
        patients = {index: patient_id for index, patient_id, _ in members}
        for (kind, center), group in groups.items():
            if kind == "center" and len(group) < MIN_CENTER_ROWS:
                raise CaseError(_new_center_alone(model, center, known), patients[group[0]])
        return list(groups.values())

    def _modality_features(self, modality: str, files: CaseFiles, families: set[str], work: Path,
                           patient_id: str | None) -> ModalityFeatures:
        case = {"patient_id": patient_id, "modality": modality, "label": None, "split": "", "group": "",
                "image": str(files.image), "mask": [str(path) for path in files.masks]}
        with case_errors():
            roi_dir = Path(crop_case(case, work / "roi", self.folder.config.roi)["roi_dir"])
        record = json.loads((roi_dir / "roi.json").read_text())
        result = ModalityFeatures(roi={key: record[key] for key in ("roi_shape", "roi_box", "slice_index")})
        if "radiomics" in families:
            use_volume = self.folder.config.radiomics.dimension == "3d" and record["ndim"] == 3
            params = self.radiomics_params["3d" if use_volume else "2d"]
            check_radiomics_mask(read_image(roi_files(roi_dir, use_volume)[1]).array, params, files, patient_id)
            result.features["radiomics"] = extract_roi(roi_dir, params, use_volume)
            for region in [r for r in region_names(self.folder.config.roi.regions) if r != "intratumoral"]:
                result.regions[region] = extract_roi(roi_dir, params, use_volume, mask_name=region_mask_name(region))
        if "deep" in families:
            network = self.networks[modality]
            with case_errors():
                item = network.prepare(files.image, list(files.masks), patient_id)
            result.features["deep"], result.cnn_probability = network.features(item)
        result.shift_warning = self.reference.warning(patient_id, modality, files.image, roi_dir, result.features)
        return result

    def _apply(self, model: ServedModel, cases: list[CaseFeatures]) -> list[Prediction]:
        """``model``'s predictions of ``cases`` in one call (ComBat harmonises them with their centres)."""
        ids = [str(case.patient_id) for case in cases]  # "None" for serve's one case without an id
        blocks = dict.fromkeys(block for case in cases for block in case.tables)
        tables = {block: pd.concat([case.tables[block].assign(patient_id=pid) for pid, case in zip(ids, cases)
                                    if block in case.tables]) for block in blocks}
        features = model.bundle.features_from_tables(tables).reindex(ids)
        harmonized = bool(self.harmonizers[model.name])
        with self.centers_lock if harmonized else nullcontext():
            if harmonized:
                assign_centers(model.bundle.model, pd.Series([case.center for case in cases], index=ids, dtype=str))
            probabilities = model.bundle.predict_proba(features)
            late = isinstance(model.bundle.model, LateFusion)
            base = model.bundle.model.base_probabilities(features) if late else None
        predictions = []
        for row, case in enumerate(cases):
            used = next(modalities for chosen, modalities in case.chosen if chosen.name == model.name)
            per_modality = {}
            for modality in used:
                summary = dict(case.computed[modality].roi)
                if "deep" in model.families(modality):
                    summary["cnn_probability"] = case.computed[modality].cnn_probability
                per_modality[modality] = summary
            if late:
                for name, value in base.iloc[row].dropna().items():
                    per_modality[model.bundle.blocks[name].modality].setdefault("base_probabilities", {})[name] = \
                        float(value)
            shift = {modality: case.computed[modality].shift_warning for modality in used
                     if case.computed[modality].shift_warning}
            predictions.append(Prediction(model.name, float(probabilities[row]), float(model.bundle.threshold), used,
                                          per_modality, shift))
        return predictions

    def explain(self, model_name: str, modality: str, files: Mapping[str, CaseFiles],
                patient_id: str | None = None) -> np.ndarray:
        """Grad-CAM overlay (RGB uint8) of the CNN behind ``model_name``'s deep features of ``modality``."""
        model = self.folder.model(model_name)
        if modality not in model.cnn_modalities:
            raise ValueError(f"model {model_name} reads no deep features of modality {modality}; Grad-CAM "
                             f"explains the CNN of {', '.join(model.cnn_modalities) or 'no modality of it'}")
        if modality not in files:
            raise MissingModalityError(f"Grad-CAM of modality {modality} needs files {_pair(modality)}",
                                       [modality], patient_id)
        network = self.networks[modality]
        with case_errors():
            item = network.prepare(files[modality].image, list(files[modality].masks), patient_id)
        return network.gradcam_overlay(item)


def _new_center_alone(model: ServedModel, center: str, known: list[str]) -> str:
    return (f"centre {center!r} was not among the training centres of model {model.name} ({', '.join(known)}); "
            f"ComBat estimates a new centre's shift and scale from at least {MIN_CENTER_ROWS} of its patients "
            f"predicted together: use `mmdlr predict --manifest` with {MIN_CENTER_ROWS} or more patients of centre "
            f"{center} (or train on it)")
