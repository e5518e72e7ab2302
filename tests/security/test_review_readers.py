"""A MetaImage or NRRD header never makes mmdlr read a file outside the header's folder.

Found in the issue 11 review: an upload named ``x.mhd`` (or ``.mha``, ``.nrrd``, ``.nhdr``) whose header
says ``ElementDataFile = /some/server/file`` or ``data file: ../file`` made the server read that file as
the image (its pixels then reach the features and the Grad-CAM overlay sent back).
"""

from __future__ import annotations

import numpy as np
import pytest

from mmdlr.errors import CaseError
from mmdlr.io.readers import read_image

META = "ObjectType = Image\nNDims = 2\nDimSize = 8 8\nElementType = MET_UCHAR\nElementDataFile = {}\n"
NRRD = "NRRD0004\ntype: uint8\ndimension: 2\nsizes: 8 8\nencoding: raw\ndata file: {}\n\n"


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.raw"
    path.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    (tmp_path / "upload").mkdir()
    return path


@pytest.mark.parametrize("name,template", [("x.mhd", META), ("x.mha", META), ("x.nhdr", NRRD), ("x.nrrd", NRRD)])
@pytest.mark.parametrize("target", ["absolute", "../secret.raw", "LIST"])
def test_header_pointing_outside_its_folder_is_refused_naming_it(secret, name, template, target):
    header = secret.parent / "upload" / name
    header.write_text(template.format(str(secret) if target == "absolute" else target))
    with pytest.raises(CaseError, match=f"{name}: header takes its pixel data from .*outside its own folder"):
        read_image(header)


@pytest.mark.parametrize("name,template", [("x.mhd", META), ("x.nhdr", NRRD)])
def test_header_with_its_data_beside_it_is_read(secret, name, template):
    (secret.parent / "upload" / "data.raw").write_bytes(secret.read_bytes())
    header = secret.parent / "upload" / name
    header.write_text(template.format("data.raw"))
    np.testing.assert_array_equal(read_image(header).array, np.arange(64).reshape(8, 8))
