"""Content digest of in-memory objects, the key of mmdlr's in-process caches."""

from __future__ import annotations

import hashlib
import pickle


def content_digest(value: object) -> bytes:
    """SHA-256 of ``value`` pickled by the C pickler (protocol 5), array data hashed in place.

    NumPy arrays (and the blocks of a DataFrame) hand their data out of band, so it is hashed where it lies
    instead of being copied into the pickle: 28 ms for a 2,160 x 1,283 float frame, against 155 ms for
    ``joblib.hash`` (whose pickler is pure Python) and 60 ms pickled in band. Equal digests mean equal
    pickles; values equal but pickled otherwise (other sharing of sub-objects) only get other digests.
    """
    digest, buffers = hashlib.sha256(), []
    digest.update(pickle.dumps(value, protocol=5, buffer_callback=buffers.append))
    for buffer in buffers:
        data = buffer.raw()
        digest.update(data.nbytes.to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()
