"""The package's shape: one mvfx namespace, layers that import one way, configs that validate and round-trip."""
from __future__ import annotations

import ast
import dataclasses
import shutil
import subprocess
import sys
import typing
import zipfile

import pytest
from helpers import REPO

import mvfx.extractors as extractors
from mvfx.media.errors import MvfxError
from mvfx.media.rules import Interval, MultipleOf, OneOf

# What each layer may import from mvfx (besides itself): media at the bottom, the CLI on top.
ALLOWED = {
    "media": set(),
    "extractors": {"media"},
    "stores": {"media"},
    "pipeline": {"media", "extractors", "stores"},
    "heads": {"media", "stores"},
    "reports": {"media", "stores", "heads"},
    "commands": {"media", "extractors", "pipeline", "stores", "heads", "reports", "commands"},
}
BACKENDS = ("mvfx.stores.zarr_store", "mvfx.stores.hdf5_store", "mvfx.stores.lock", "mvfx.stores.tables")


def _mvfx_imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "mvfx" or n.startswith("mvfx.")}


def _modules(layer: str) -> list:
    """Every module of a layer, sub-packages included (heads/models/, heads/data/, heads/runs/, ...)."""
    return sorted(p for p in (REPO / layer).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_one_way(layer):
    for path in _modules(layer):
        for name in _mvfx_imports(path):
            target = name.split(".")[1] if "." in name else "mvfx"
            assert target == layer or target in ALLOWED[layer], f"{path.relative_to(REPO)} imports {name}"
            if layer != "stores":
                assert not name.startswith(BACKENDS), f"{path.relative_to(REPO)} reaches into the store backend {name}"


def test_head_models_never_open_a_store():
    """heads/models/ holds estimators only: they take arrays (or a ClipReader when predicting), heads/data/ reads stores."""
    models = sorted((REPO / "heads" / "models").glob("*.py"))
    assert {p.name for p in models} >= {"lasso.py", "lstm.py", "fusion.py", "correspond.py", "mvf.py", "mvf_nets.py", "autoencoder.py"}
    assert {p for p in models} <= set(_modules("heads")), "the layer test must see the sub-packages"
    for path in models:
        stores = sorted(n for n in _mvfx_imports(path) if n == "mvfx.stores" or n.startswith("mvfx.stores."))
        assert not stores, f"{path.relative_to(REPO)} imports {', '.join(stores)}"


def test_the_wheel_carries_every_module_of_every_layer(tmp_path):
    """An editable install finds any folder of the checkout, so a sub-package missing from pyproject.toml's explicit
    ``packages`` list goes unseen until a wheel is installed: build one (from a copy, as setuptools writes build/
    where it builds) and look for every module in it."""
    src = tmp_path / "src"
    src.mkdir()
    for path in [REPO / "pyproject.toml", REPO / "README.md", *REPO.glob("*.py")]:
        shutil.copy2(path, src / path.name)
    for layer in ALLOWED:
        shutil.copytree(REPO / layer, src / layer, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist"],
                          cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("mvfx-*.whl"))).namelist())
    missing = [f"mvfx/{p.relative_to(REPO).as_posix()}" for layer in ALLOWED for p in _modules(layer)
               if f"mvfx/{p.relative_to(REPO).as_posix()}" not in names]
    assert not missing, f"not in the wheel (add their packages to pyproject.toml): {', '.join(missing)}"
    assert {"mvfx/heads/models/__init__.py", "mvfx/heads/data/__init__.py", "mvfx/heads/runs/__init__.py"} <= names


def test_installed_as_one_namespace(tmp_path):
    """Outside the source tree only mvfx.* exists: no top-level cli, pipeline, stores... in site-packages."""
    code = ("import importlib.util, mvfx.cli, mvfx.pipeline.run;"
            "print([m for m in ('cli', 'pipeline', 'extractors', 'stores', 'heads', 'media') if importlib.util.find_spec(m)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("name", extractors.names())
def test_config_round_trips_through_the_store_description(name):
    original = extractors.create(name)
    rebuilt = extractors.from_description(original.describe())
    assert rebuilt.config == original.config and rebuilt.describe()["config"] == original.describe()["config"]


def _bad_values(field: dataclasses.Field, hint) -> list[str]:
    """Values a field must refuse: one of the wrong type, and one breaking each declared rule."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    bad = {bool: ["maybe"], int: ["x", "1.5"], float: ["x", "nan"], str: []}[target]
    for rule in field.metadata.get("rules", ()):
        if isinstance(rule, OneOf):
            bad.append("not-a-choice")
        elif isinstance(rule, Interval):
            bad.append(str(rule.low if rule.low_open else rule.low - 1))
        elif isinstance(rule, MultipleOf):
            bad.append(str(rule.step * 3 + 1))
    return bad


CASES = [(name, field.name, value)
         for name in extractors.names()
         for field, hint in ((f, typing.get_type_hints(extractors.get_class(name).config_class)[f.name])
                             for f in dataclasses.fields(extractors.get_class(name).config_class))
         for value in _bad_values(field, hint)]


@pytest.mark.parametrize("name, field, value", CASES)
def test_every_option_is_validated_when_the_config_is_built(name, field, value):
    with pytest.raises(MvfxError) as caught:
        extractors.create(name, **{field: value})
    message = str(caught.value)
    assert message.startswith(f"option {name}.{field}={value}: ") and "\n" not in message


def test_unknown_option_names_the_known_ones():
    with pytest.raises(MvfxError, match=r"extractor colour: unknown option 'fsp'; known: fps, "):
        extractors.create("colour", fsp="2")


def test_weights_know_their_users_preprocessing_and_classes():
    from mvfx.extractors.weight_registry import REGISTRY

    assert extractors.users_of("slowfast_r50_k400") == ["slowfast_r50", "slowfast_r50_logits"]
    assert extractors.users_of("yolov5su") == ["yolov5"]
    assert all(extractors.users_of(name) for name in REGISTRY), "every registered file is used by an extractor"
    i3d = REGISTRY["i3d_r50_k400"]
    assert i3d.preprocessing.crop == 224 and len(i3d.category_names()) == 400
    assert extractors.create("i3d_logits").feature_names == i3d.category_names()
