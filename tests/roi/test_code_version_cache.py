"""ROI crops and radiomics features are cached under mmdlr's code version: a code change never reuses them."""

from __future__ import annotations

import json
from pathlib import Path

from mmdlr.io.manifest import read_manifest
from mmdlr.pipeline.stages import code_version
from mmdlr.radiomics.extract import DEFAULT_PARAMS, extract_roi
from mmdlr.roi import cache
from mmdlr.roi.cache import crop_case


def test_changed_code_version_misses_the_roi_and_radiomics_caches(small_cohort, tmp_path, monkeypatch):
    case = read_manifest(small_cohort).cases("us")[0]
    roi_dir = Path(crop_case(case, tmp_path, code="1.0+aaaa")["roi_dir"])
    record = roi_dir / "roi.json"
    first_key, first_stamp = json.loads(record.read_text())["key"], record.stat().st_mtime_ns

    crop_case(case, tmp_path, code="1.0+aaaa")
    assert record.stat().st_mtime_ns == first_stamp  # same code: the crop is reused
    crop_case(case, tmp_path, code="1.0+bbbb")
    assert json.loads(record.read_text())["key"] != first_key  # another code version: cropped again

    extract_roi(roi_dir, DEFAULT_PARAMS["2d"], code="1.0+aaaa")
    extract_roi(roi_dir, DEFAULT_PARAMS["2d"], code="1.0+aaaa")
    assert len(list(roi_dir.glob("radiomics_*.json"))) == 1
    extract_roi(roi_dir, DEFAULT_PARAMS["2d"], code="1.0+bbbb")
    assert len(list(roi_dir.glob("radiomics_*.json"))) == 2

    monkeypatch.setattr(cache, "code_version", lambda: "1.0+bbbb")  # the default is the running code's version
    crop_case(case, tmp_path)
    assert json.loads(record.read_text())["key"] == cache.roi_cache_key(case, cache.RoiSettings(), "1.0+bbbb")
    assert cache.roi_cache_key(case, cache.RoiSettings(), code_version()) != first_key
