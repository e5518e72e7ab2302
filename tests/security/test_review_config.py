"""A config value that MONAI's parser would instantiate (a mapping with ``_target_``) never reaches it.

Found in the issue 11 review: ``deep.spatial_size`` is only checked to be a list, so
``--set 'deep.spatial_size=[{_target_: os.system, command: ...}, 32]'`` (or the same in a run folder's
provenance.json) ran a shell command when the bundle's preprocessing was parsed.
"""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from mmdlr.analysis.config import ConfigError
from mmdlr.pipeline.bundle import CONFIGS, bundle_overrides, refuse_parsed_strings
from mmdlr.pipeline.config import load_run_config, run_config_from_dict


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile config value was instantiated"


def _hostile_size(marker) -> list:
    return [{"_target_": "pathlib.Path.touch", "self": str(marker)}, 32]


def test_set_with_a_target_mapping_is_refused_before_the_bundle_parses_it(marker):
    try:
        config = load_run_config(None, [f"deep.spatial_size=[{{_target_: pathlib.Path.touch, self: '{marker}'}}, 32]"])
    except ConfigError:
        return
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    with pytest.raises(ConfigError, match="_target_"):
        parser.update(bundle_overrides(config, marker.parent, "us"))
        parser.get_parsed_content("preprocessing")


def test_provenance_with_a_target_mapping_is_refused(marker):
    values = {"deep": {"spatial_size": _hostile_size(marker)}}
    with pytest.raises(ConfigError, match="_target_"):
        bundle_overrides(run_config_from_dict(values), marker.parent, "us")


@pytest.mark.parametrize("key", ["_target_", "_requires_", "_mode_", "_disabled_", "_desc_"])
def test_every_reserved_key_is_refused_at_any_depth(key):
    with pytest.raises(ConfigError, match=key):
        refuse_parsed_strings({"a": [1, {"b": {key: "x"}}]})
