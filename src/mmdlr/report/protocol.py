"""The protocol of a run described in words, item by item (TRIPOD+AI: data, splits, selection, metrics)."""

from __future__ import annotations

from mmdlr.classify.zoo import TREE_ENSEMBLES
from mmdlr.io.manifest import Manifest, parse_label
from mmdlr.pipeline.config import RunConfig
from mmdlr.radiomics.ibsi import run_settings_text


def cohort_counts(config: RunConfig, source: Manifest) -> str:
    """The cohort as "N patients (M malignant, B benign)", or "N images" where a manifest row is an image
    (``report.unit``)."""
    labels = source.table["label"].map(parse_label)
    unit = config.report.unit if len(labels) == 1 else f"{config.report.unit}s"
    counts = f"{len(labels)} {unit} ({(labels == 1).sum()} malignant, {(labels == 0).sum()} benign)"
    if source.centers is None:
        return counts
    per_center = source.centers.value_counts().sort_index()
    return f"{counts} at {len(per_center)} centers ({', '.join(f'{c}: {n}' for c, n in per_center.items())})"


def _comparisons_text(analysis) -> str:
    prespecified = "; ".join(f"{a} vs {b}" for a, b in analysis.comparisons) or "none"
    tests = "DeLong's paired test" + (" and the fold-wise corrected resampled t" if analysis.protocol != "holdout"
                                      else "")
    return (f"model comparisons by {tests}: pre-specified in the config ({prespecified}); every other fusion vs "
            "single-modality pair exploratory; Holm-adjusted p-values within each set")


def _screening_text(analysis) -> str:
    """How the inner-CV search screened the classifiers it had to screen (``search:``); nothing for a plain grid
    search or when no tree ensemble or SVM is searched."""
    search = analysis.search
    if search.screen_margin is None:
        return ""
    parts = []
    if set(analysis.classifiers) & TREE_ENSEMBLES:
        parts.append(f"tree ensembles were first scored with {search.screen_share:.1%} of their trees and the "
                     f"{search.screen_keep} best within {search.screen_margin:g} AUC of the best first score scored "
                     "in full")
    if "svm" in analysis.classifiers:
        parts.append("SVMs were scored before Platt scaling (the same AUC) and calibrated when chosen")
    return "".join(f"; {part}" for part in parts)


def protocol_items(config: RunConfig, source: Manifest) -> dict[str, str]:
    analysis, deep, roi = config.analysis, config.deep, config.roi
    modalities = ", ".join(m.upper() for m in source.modalities)
    if analysis.protocol == "holdout":
        splits = (f"Hold-out (the paper's protocol): the manifest's train/test split where given, else a "
                  f"stratified {1 - analysis.holdout.test_size:.0%}/{analysis.holdout.test_size:.0%} split "
                  f"(seed {analysis.seed}) that never separates a group. All selection on the training part; "
                  "the test part is used once.")
    elif analysis.protocol == "leave_center_out":
        splits = ("Leave-center-out: each center (the manifest's center column) once the test set, the other "
                  "centers the training set; every fitted step is refitted on the training centers, inner CV "
                  "within them.")
    else:
        splits = (f"Nested cross-validation: {analysis.nested_cv.repeats} × stratified grouped "
                  f"{analysis.nested_cv.outer_folds}-fold outer loop (seed {analysis.seed}); every fitted step "
                  "is refitted inside each outer training fold.")
    bootstrap = (f"class-stratified BCa bootstrap over groups of patients (Efron 1987; {analysis.bootstrap.n} "
                 f"resamples, seed {analysis.bootstrap.seed})")
    if analysis.protocol == "holdout":
        intervals = ("proportions: Wilson score interval (Wilson 1927); AUC: DeLong variance (DeLong et al. 1988) "
                     "on the logit scale (Pepe 2003; Qin & Hotilovac 2008), Newcombe score interval (Newcombe 2006) "
                     f"where the AUC is 0 or 1; Brier: {bootstrap}")
    else:
        intervals = ("mean of the outer folds with the Nadeau–Bengio corrected resampled t interval (Nadeau & "
                     "Bengio 2003), Wilson or Newcombe score interval where every fold gives the same value; "
                     f"pooled out-of-fold AUC: {bootstrap}")
    margin = f"{roi.margin:g} {'%' if roi.margin_unit == 'percent' else 'pixels'}"
    return {
        "Source of data": f"{cohort_counts(config, source)} from {source.path.name}; modalities {modalities}.",
        "Outcome": f"Benign (0) vs malignant (1), labels from {config.report.label_source}.",
        "Predictors": (f"PyRadiomics {config.radiomics.dimension.upper()} features (first order, shape, GLCM, "
                       f"GLRLM, GLSZM, NGTDM, GLDM) of the lesion ROI (bounding box + {margin}, largest slice "
                       f"for volumes); {deep.backbone} average-pool deep features ({deep.mode} backbone, "
                       f"weights '{deep.weights}', head trained {deep.max_epochs} epochs, SGD lr "
                       f"{deep.learning_rate}, batch {deep.batch_size})."
                       if deep.enabled else "PyRadiomics features only (deep stage disabled)."),
        "Radiomics settings (IBSI terms)": run_settings_text(config.radiomics),
        "Missing data": (f"Patients missing a modality are absent from its tables; early fusion uses "
                         f"{'complete patients only' if analysis.fusion.missing == 'complete' else 'training-fold median imputation'};"
                         " late fusion averages the models that exist for a patient."),
        "Data splitting": splits,
        "Model building": (f"Radiomics: median imputation, variance filter, scaling, Mann–Whitney U "
                           f"(p < {analysis.select.mannwhitney_p}), Spearman redundancy (|rho| > "
                           f"{analysis.select.spearman_rho}), LASSO. Deep: scaling, PCA {analysis.pca.deep}. "
                           f"Radiomics + deep (Rad + DF): selected radiomics -> PCA {analysis.pca.fused_radiomics}"
                           f" beside deep -> PCA {analysis.pca.fused_deep}, spliced"
                           f"{f'; PCA of all features: PCA {analysis.pca.fused}' if analysis.fusion.pca_of_all else ''}"
                           ". Classifiers "
                           f"{', '.join(analysis.classifiers)}, chosen with their hyper-parameters by "
                           f"{analysis.inner_folds}-fold inner CV (ROC AUC) on training data only"
                           f"{_screening_text(analysis)}. Fusion: early "
                           "(concatenation), ensemble (softmax of inner-CV accuracies / temperature "
                           f"{analysis.fusion.temperature}), stacking (meta-learner on "
                           "out-of-fold probabilities)."),
        "Performance measures": ("Accuracy, AUC, sensitivity TP/(TP+FN), specificity TN/(TN+FP), Brier score with "
                                 f"95% CIs ({intervals}; an interval that cannot be computed is left empty with "
                                 "its reason in the table notes), calibration intercept and slope with Wald CIs "
                                 "(Cox 1958), reliability curve, decision curve; threshold "
                                 f"{analysis.threshold} (never tuned on test data); {_comparisons_text(analysis)}."),
        "Reproducibility": "Every input file, setting, seed, package version and stage time is in provenance.json.",
    }
