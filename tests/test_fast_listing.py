"""Listings and help stay light: no deep-learning or signal library is imported until an extractor's ``setup``.

Each check runs in a fresh interpreter (``sys.modules`` of this one holds whatever other tests imported) and
looks at what was imported; it never times anything.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mvfx.extractors.emobase import NAMES_FILES, emobase_names, emobase_smile

# Loaded by extractors' setup (or by the commands that need them), never by a listing or --help.
HEAVY = ("torch", "torchvision", "ultralytics", "pytorchvideo", "facenet_pytorch", "opensmile", "pandas", "cv2",
         "librosa", "scipy", "sklearn")

# Runs mvfx in this interpreter, then writes the modules it imported to the file named by argv[1].
RUN_CLI = """
import json, sys
from mvfx.cli import main
modules_file, args = sys.argv[1], sys.argv[2:]
try:
    main(args, prog_name="mvfx")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
with open(modules_file, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def _run_mvfx(tmp_path, *args: str) -> tuple[str, list[str]]:
    """stdout of ``mvfx ARGS`` run in a fresh interpreter, and the modules it imported."""
    modules_file = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", RUN_CLI, str(modules_file), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(modules_file.read_text())


def test_importing_the_extractors_and_reading_their_declarations_imports_no_heavy_library():
    code = ("import json, sys, mvfx.extractors as x\n"
            "for name in x.names():\n"
            "    e = x.create(name)\n"
            "    e.describe(), [w.name for w in e.weights], e.summary\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert _heavy(json.loads(proc.stdout)) == []


def test_extractors_json_lists_every_extractor_with_its_names_without_heavy_imports(tmp_path):
    stdout, modules = _run_mvfx(tmp_path, "extractors", "--json")
    assert _heavy(modules) == []
    listing = {row["name"]: row for row in json.loads(stdout)}
    import mvfx.extractors as extractors

    assert sorted(listing) == extractors.names()
    for name, row in listing.items():
        assert row["dim"] == len(row["feature_names"]) == extractors.create(name).dim, name
    assert listing["emobase"]["dim"] == 988 and listing["emobase_lld"]["dim"] == 26
    assert listing["emobase"]["feature_names"][:2] == ["pcm_intensity_sma_max", "pcm_intensity_sma_min"]
    assert listing["yolov5"]["feature_names"][:2] == ["person_count", "person_max_conf"]


@pytest.mark.parametrize("args", [["extractors"], ["--help"], ["extract", "--help"]], ids=" ".join)
def test_listing_and_help_import_no_heavy_library(tmp_path, args):
    stdout, modules = _run_mvfx(tmp_path, *args)
    assert stdout.strip()
    assert _heavy(modules) == []


@pytest.mark.parametrize("level", sorted(NAMES_FILES))
def test_the_shipped_emobase_names_are_opensmiles_own(level):
    """The names the listing shows (and stores record) come from mvfx's files; opensmile must agree."""
    pytest.importorskip("opensmile")
    assert emobase_names(level) == list(emobase_smile(level).feature_names)
