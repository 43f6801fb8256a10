"""HDF5 export/import round trip, store verify, import of precomputed CSV features."""

import h5py
import numpy as np
import zarr
from helpers import run_cli

from mvfx.stores import Hdf5FeatureStore, open_store


def _run(*args, check=True):
    result = run_cli(*args)
    assert not check or result.exit_code == 0, result.stderr
    return result


def _assert_same_store(a, b):
    assert a.store_attrs() == b.store_attrs()
    assert a.extractors() == b.extractors()
    for name in a.extractors():
        assert a.group_attrs(name) == b.group_attrs(name)
        for clip_id in a.clip_ids(name):
            (va, ta), (vb, tb) = a.read(name, clip_id), b.read(name, clip_id)
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes() and ta.tobytes() == tb.tobytes()
    assert a.clips().equals(b.clips()) and a.failures().equals(b.failures())


def test_hdf5_round_trip_is_bit_exact(demo_store, tmp_path):
    h5, back = tmp_path / "demo.h5", tmp_path / "back.zarr"
    _run("store", "export", demo_store, h5)
    _run("store", "import", h5, back)
    original = open_store(demo_store)
    exported = open_store(h5)
    assert isinstance(exported, Hdf5FeatureStore)
    _assert_same_store(original, exported)
    _assert_same_store(original, open_store(back))
    assert _run("store", "verify", back).exit_code == 0
    with h5py.File(h5) as f:  # stock h5py reads it: gzip, chunked along rows
        values = f["features/emobase/values"]
        assert values.compression == "gzip" and values.chunks[1] == 988
        assert f["features/emobase"].attrs["feature_names"][0] == "pcm_intensity_sma_max"


def test_export_of_an_interrupted_store_includes_its_parts(odd_corpus, tmp_path):
    store = tmp_path / "parts.zarr"
    _run("extract", odd_corpus, "--store", store, "-e", "colour", "-j", "1", "--no-compact", check=False)
    assert open_store(store).summary()["extractors"]["colour"]["uncompacted_parts"] == 3
    _run("store", "export", store, tmp_path / "p.h5")
    exported = open_store(tmp_path / "p.h5")
    for clip_id in open_store(store).clip_ids("colour"):
        np.testing.assert_array_equal(exported.read("colour", clip_id)[0], open_store(store).read("colour", clip_id)[0])
    assert exported.verify() == []


def test_import_refuses_an_existing_path(demo_store, tmp_path):
    _run("store", "export", demo_store, tmp_path / "d.h5")
    proc = _run("store", "import", tmp_path / "d.h5", demo_store, check=False)
    assert proc.exit_code == 2 and "already exists" in proc.stderr


def test_verify_finds_corruption(demo_corpus, tmp_path):
    from mvfx.pipeline.run import run_extract

    store = tmp_path / "v.zarr"
    run_extract(str(demo_corpus), str(store), ["colour"], workers=1)
    assert _run("store", "verify", store).exit_code == 0
    root = zarr.open_group(str(store), mode="a")
    index = root["features/colour/index"]
    ids = index["clip_id"][:].tolist()
    first = int(index["offset"][ids.index("clip_001")])
    root["features/colour/values"][first, 0] = 7.0  # bit rot
    third = int(index["offset"][ids.index("clip_003")])
    root["features/colour/values"][third + 1, 2] = np.nan
    root["features/colour/times"][third + 2] = [9.0, 8.0]
    proc = _run("store", "verify", store, check=False)
    assert proc.exit_code == 1
    assert "colour/clip_001: checksum" in proc.stdout and "colour/clip_003: values hold NaN" in proc.stdout
    assert "colour/clip_003: times are not finite, not increasing" in proc.stdout
    assert "colour/clip_003: checksum" in proc.stdout and "4 problems" in proc.stdout


def test_import_features_from_csv(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "song_a.csv").write_text("time,energy,brightness\n0.0,1.0,0.5\n0.5,2.0,0.25\n1.0,3.0,0.125\n")
    (folder / "song_b.csv").write_text("time,energy,brightness\n0.0,4.0,1.0\n0.5,5.0,2.0\n")
    (folder / "broken.csv").write_text("time,other\n0.0,1\n")
    store = tmp_path / "imp.zarr"
    proc = _run("store", "import-features", folder, "--name", "handmade", "--store", store, check=False)
    assert proc.exit_code == 1 and "broken.csv: header differs from the other files' (column 2 is 'other', not 'energy')" in proc.stderr
    s = open_store(store)
    values, times = s.read("handmade", "song_a")
    np.testing.assert_array_equal(values, [[1.0, 0.5], [2.0, 0.25], [3.0, 0.125]])
    np.testing.assert_allclose(times, [[0, 0.5], [0.5, 1.0], [1.0, 1.5]])
    attrs = s.attrs("handmade")
    assert attrs["feature_names"] == ["energy", "brightness"] and attrs["version"] == "imported"
    assert attrs["source"] == str(folder.resolve()) and "source" not in attrs["config"]
    assert s.failures()["clip_id"].tolist() == ["broken"]
    hop_folder = tmp_path / "hop"
    hop_folder.mkdir()
    (hop_folder / "song_c.csv").write_text("x,y\n1,2\n3,4\n")
    _run("store", "import-features", hop_folder, "--name", "fixed", "--store", store, "--hop", "0.96")
    np.testing.assert_allclose(open_store(store).read("fixed", "song_c")[1], [[0, 0.96], [0.96, 1.92]])
