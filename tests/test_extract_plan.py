"""A run's plan, worked out before anything runs: built without a store, printed by `mvfx extract --dry-run`."""
from __future__ import annotations

import pytest
from helpers import run_cli

from mvfx.media.errors import MvfxError
from mvfx.pipeline.plan import RunSettings, plan


def test_a_plan_needs_no_store_and_adds_the_dependencies(demo_corpus):
    settings = RunSettings(str(demo_corpus), "never-made.zarr", ("colour", "i3d"), {"i3d": {"per_shot": "true"}},
                           random_weights=True, workers=1)
    planned = plan(settings)
    assert [e.name for e in planned.extractors] == ["shots", "colour", "i3d"]  # per-shot I3D needs the shots first
    assert len(planned.todo) == 6 and all([s.name for s in missing] == ["shots", "colour", "i3d"] for _, missing in planned.todo)
    assert planned.skipped == 0 and planned.resources.executor == "in-process" and planned.resources.workers == 1
    assert [d["weights"] for d in planned.descriptions] == ["none", "none", "random"]


def test_missing_weights_and_bad_options_fail_when_planning(demo_corpus):
    with pytest.raises(MvfxError, match=r"i3d_r50_k400\) is missing .*mvfx weights fetch i3d_r50_k400"):
        plan(RunSettings(str(demo_corpus), "s.zarr", ("i3d",)))
    with pytest.raises(MvfxError, match="short_side=200: must be at least i3d's centre crop"):
        plan(RunSettings(str(demo_corpus), "s.zarr", ("i3d",), {"i3d": {"short_side": "200"}}, random_weights=True))


def test_dry_run_prints_the_plan_and_writes_nothing(demo_corpus, tmp_path):
    store = tmp_path / "s.zarr"
    dry = run_cli("extract", demo_corpus, "--store", store, "-e", "colour,resnet50", "--random-weights", "-j", "2",
                  "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("clips: 6 to do of 6 found (12 clip x extractor pairs; 0 already in")
    assert lines[1] == "extractors: colour (weights none), resnet50 (weights random)"
    assert lines[2] == "workers: local dask cluster (2 worker processes)"
    assert lines[3].startswith("threads: ") and lines[4].startswith("memory per clip: ")
    assert "455x256 for resnet50" in lines[4] and lines[-1] == "nothing was run (--dry-run)"
    assert not store.exists()


def test_dry_run_against_a_store_counts_what_is_there(demo_corpus, tmp_path):
    store = tmp_path / "s.zarr"
    assert run_cli("extract", demo_corpus / "clip_00[0-1].mp4", "--store", store, "-e", "colour", "-j", "1").exit_code == 0
    dry = run_cli("extract", demo_corpus, "--store", store, "-e", "colour,emobase", "--dry-run")
    assert dry.stdout.startswith("clips: 6 to do of 6 found (10 clip x extractor pairs; 2 already in ")
    assert "memory per clip: 0." in dry.stdout
