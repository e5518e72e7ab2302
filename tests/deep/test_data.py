"""Train/validation partition inside the development cases; the test split stays untouched."""

from __future__ import annotations

import pytest

from mmdlr.deep import partition, select_patients


def make_cases(n: int = 40, groups_of: int = 1) -> list[dict]:
    return [{"patient_id": f"P{i:03d}", "label": i % 2, "split": "test" if i % 5 == 0 else "train",
             "group": f"G{i // groups_of:03d}" if groups_of > 1 else ""} for i in range(n)]


def ids(cases: list[dict]) -> set[str]:
    return {case["patient_id"] for case in cases}


def test_train_and_validation_partition_the_development_cases_only():
    cases = make_cases()
    train, val = partition(cases, "train", 0.25, seed=1), partition(cases, "val", 0.25, seed=1)
    test = partition(cases, "test")
    assert ids(train) | ids(val) == ids(partition(cases, "development"))
    assert not ids(train) & ids(val)
    assert not (ids(train) | ids(val)) & ids(test)
    assert {case["label"] for case in val} == {0, 1}
    assert 0.15 <= len(val) / (len(train) + len(val)) <= 0.35
    assert ids(partition(cases, "val", 0.25, seed=1)) == ids(val)
    assert ids(partition(cases, "val", 0.25, seed=2)) != ids(val)
    assert partition(cases, "all") == cases


def test_groups_are_never_split_between_train_and_validation():
    cases = [case | {"split": "train"} for case in make_cases(48, groups_of=4)]
    val = partition(cases, "val", 0.25, seed=0)
    val_groups = {case["group"] for case in val}
    assert all(case["group"] not in val_groups for case in partition(cases, "train", 0.25, seed=0))


def test_partition_errors_are_explained():
    with pytest.raises(ValueError, match="unknown part"):
        partition(make_cases(), "holdout")
    with pytest.raises(ValueError, match="no test patients"):
        partition([case | {"split": ""} for case in make_cases()], "test")
    one_benign = [{"patient_id": f"P{i}", "label": int(i > 0), "split": "", "group": ""} for i in range(6)]
    with pytest.raises(ValueError, match="1 benign and 5 malignant"):
        partition(one_benign, "train")


def test_select_patients_by_listed_id_or_first_n(tmp_path):
    cases = make_cases(10)
    listed = tmp_path / "patients.json"
    listed.write_text('["P003", "P001"]')
    assert [c["patient_id"] for c in select_patients(cases, str(listed))] == ["P003", "P001"]
    assert len(select_patients(cases, None, first=3)) == 3
    listed.write_text('["P001", "P999"]')
    with pytest.raises(ValueError, match="P999"):
        select_patients(cases, str(listed))
