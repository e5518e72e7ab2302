"""Abusive requests to `mmdlr serve` are 4xx naming the field, never a 500.

Found in the issue 11 review: a ``params`` field of 100,000 nested ``[`` (200 kB) made ``json.loads``
raise RecursionError, answered as a 500 internal error instead of a 400.
"""

from __future__ import annotations

import pytest

from mmdlr.serve.uploads import UploadError, read_params


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deeply_nested_params_are_an_upload_error(opening):
    closing = "]" if opening == "[" else "}"
    with pytest.raises(UploadError, match="params is nested too deeply"):
        read_params([opening * 100_000 + "1" + closing * 100_000])
