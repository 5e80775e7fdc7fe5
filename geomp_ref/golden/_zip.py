"""Byte-reproducible ``.npz`` files: a zip of ``.npy`` entries with no timestamps.

``numpy.savez`` stamps every zip entry with the current time, so two runs differ. Here every
entry gets the same fixed date (1980-01-01 00:00:00, the earliest a zip header can hold), the
same permission bits and creator system, and no compression (so the bytes do not depend on the
zlib build); entries are written in the order given. Arrays are stored little-endian and
C-ordered, so the same arrays give the same bytes on every machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import numpy as np

__all__ = ["ZIP_DATE", "npz_bytes", "sha256", "write_bytes"]

#: The date every zip entry carries.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _canonical(arr) -> np.ndarray:
    """``arr`` as a C-ordered little-endian array (float64, int64 or bool)."""
    a = np.asarray(arr)
    if a.dtype.kind == "f":
        dtype = "<f8"
    elif a.dtype.kind in "iu":
        dtype = "<i8"
    elif a.dtype.kind == "b":
        dtype = "|b1"
    else:
        raise TypeError(f"golden arrays hold real numbers, integers or booleans; got {a.dtype}")
    # not ascontiguousarray: it turns a 0-d array into shape (1,)
    return np.array(a, dtype=dtype, order="C")


def npz_bytes(arrays: dict) -> bytes:
    """The ``.npz`` file holding ``arrays`` (``{key: array}``, entries in this order).

    ``numpy.load`` reads it back with the same keys (each entry is ``<key>.npy``).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix; the default depends on the platform
            info.external_attr = 0o644 << 16
            body = io.BytesIO()
            np.lib.format.write_array(body, _canonical(arr), allow_pickle=False)
            zf.writestr(info, body.getvalue())
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
