"""The backend table: which backend holds which address, read-only HDF5, and the writer protocol."""
from __future__ import annotations

import numpy as np
import pytest

from mvfx.media.errors import MvfxError
from mvfx.stores import StoreWriter, open_store, open_writer
from mvfx.stores.addresses import parse_address
from mvfx.stores.backends import backend_for
from mvfx.stores.exchange import export_hdf5


def _small_store(path) -> None:
    with open_writer(path) as writer:
        writer.register_extractor({"extractor": "x", "version": "1", "config": {}, "weights": "none", "dim": 2})
        writer.append("x", [("a", np.ones((3, 2), np.float32), np.array([[0.0, 1], [1, 2], [2, 3]]))])
        writer.set_clip({"clip_id": "a", "status": "ok"})


def test_each_address_goes_to_its_backend(tmp_path):
    _small_store(tmp_path / "f.zarr")
    export_hdf5(open_store(tmp_path / "f.zarr"), tmp_path / "f.h5")
    (tmp_path / "misnamed.zarr").write_bytes((tmp_path / "f.h5").read_bytes())  # an HDF5 file by its content
    cases = {"s3://lab/features": "icechunk", "gs://lab/f": "icechunk", str(tmp_path / "new.icechunk"): "icechunk",
             str(tmp_path / "f.zarr"): "zarr", str(tmp_path / "new.zarr"): "zarr", str(tmp_path / "f.h5"): "hdf5",
             str(tmp_path / "misnamed.zarr"): "hdf5"}
    for text, name in cases.items():
        assert backend_for(parse_address(text), new=True).name == name, text
    assert backend_for(parse_address(tmp_path / "new.icechunk")).name == "zarr"  # reading: nothing there yet
    assert open_store(tmp_path / "misnamed.zarr").read("x", "a")[0].shape == (3, 2)


def test_an_hdf5_export_is_read_only_in_one_line(tmp_path):
    _small_store(tmp_path / "f.zarr")
    export_hdf5(open_store(tmp_path / "f.zarr"), tmp_path / "f.h5")
    with pytest.raises(MvfxError, match=r"f\.h5: an hdf5 file is read-only here; .*mvfx store import"):
        open_writer(tmp_path / "f.h5")


def test_writers_follow_the_protocol(tmp_path):
    with open_writer(tmp_path / "w.zarr") as writer:
        assert isinstance(writer, StoreWriter)
    with open_writer(tmp_path / "w.icechunk") as writer:
        assert isinstance(writer, StoreWriter) and type(writer).__name__ == "IcechunkStoreWriter"
