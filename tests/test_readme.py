"""The README's reading example must work exactly as written."""
from helpers import readme_python_block


def test_plain_zarr_reading_example(demo_store, capsys):
    code = readme_python_block("zarr.open_group(store")
    assert 'store = "demo/features.zarr"' in code and len(code.strip().splitlines()) <= 12
    exec(code.replace("demo/features.zarr", str(demo_store)), {})
    printed = capsys.readouterr().out
    assert printed.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")


def test_plain_h5py_reading_example(demo_store, tmp_path, capsys):
    from mvfx.stores import open_store
    from mvfx.stores.exchange import export_hdf5

    h5 = tmp_path / "features.h5"
    export_hdf5(open_store(demo_store), h5)
    code = readme_python_block("h5py.File")
    assert len(code.strip().splitlines()) <= 12
    exec(code.replace("demo/features.h5", str(h5)), {})
    assert capsys.readouterr().out.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")
