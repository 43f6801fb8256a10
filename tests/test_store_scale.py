"""Store bookkeeping at corpus scale: the array index (format 2), migration from format 1, slab verification,
the writer's columnar tables, and repeat imports that skip unchanged files."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import zarr

from mvfx.media.errors import MvfxError
from mvfx.pipeline.import_features import import_feature_csvs
from mvfx.stores import open_store, open_writer
from mvfx.stores.base import FeatureStore
from mvfx.stores.exchange import export_hdf5, import_hdf5
from mvfx.stores.layout import CLIP_COLUMNS, FORMAT_VERSION
from mvfx.stores.tables import RecordTable, to_columns, to_frame

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1.zarr"
N = 300  # clips per feature set; the slab tests shrink the slabs so that several are read
LAST_PART = f"c{N + 39:05d}"  # the last of the 40 clips committed as parts


def _expected_v1(name: str, k: int) -> np.ndarray:
    """The values tests/fixtures/store_v1.zarr was written with (by mvfx at 47804f0, format 1)."""
    dim, rows = (3, k + 2) if name == "alpha" else (2, k + 2)
    if k == 5:
        return np.ones((2, 3), np.float32)
    return np.arange(rows * dim, dtype=np.float32).reshape(rows, dim) + 100 * k


def _v1_copy(tmp_path: Path) -> Path:
    store = tmp_path / "old.zarr"
    shutil.copytree(FIXTURE_V1, store)
    return store


def _check_v1_content(store: FeatureStore) -> None:
    assert store.clip_ids("alpha") == [f"clip_{k}" for k in range(6)]
    assert store.clip_ids("beta") == [f"clip_{k}" for k in range(4)]
    for name, ks in (("alpha", range(6)), ("beta", range(4))):
        for k in ks:
            np.testing.assert_array_equal(store.read(name, f"clip_{k}")[0], _expected_v1(name, k))
    assert store.failures()["clip_id"].tolist() == ["clip_4"]
    assert store.verify() == []


def test_a_format_1_store_reads_as_it_did(tmp_path):
    store = open_store(_v1_copy(tmp_path))
    assert store.store_attrs()["format_version"] == 1
    _check_v1_content(store)
    assert store.summary()["extractors"]["alpha"]["uncompacted_parts"] == 1


def test_a_writer_migrates_format_1_to_arrays(tmp_path):
    path = _v1_copy(tmp_path)
    with open_writer(path) as writer:
        writer.compact()
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["format_version"] == FORMAT_VERSION == 2
    for name, n in (("alpha", 6), ("beta", 4)):
        group = root[f"features/{name}"]
        assert "clip_index" not in group.attrs and group.attrs["indexed_clips"] == n
        assert sorted(group["index/clip_id"][:n].tolist()) == [f"clip_{k}" for k in range(n)]
    migrated = open_store(path)
    _check_v1_content(migrated)
    assert migrated.summary()["extractors"]["alpha"]["uncompacted_parts"] == 0
    with open_writer(path):  # a second open finds nothing to migrate and changes nothing
        pass
    _check_v1_content(open_store(path))


def test_a_format_1_hdf5_export_still_imports(tmp_path):
    old = open_store(_v1_copy(tmp_path))
    h5 = tmp_path / "new.h5"
    export_hdf5(old, h5)
    with h5py.File(h5, "r") as f:
        assert f.attrs["format_version"] == 2 and f["features/alpha"].attrs["indexed_clips"] == 6
    import_hdf5(h5, tmp_path / "back.zarr")
    _check_v1_content(open_store(tmp_path / "back.zarr"))


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Path:
    """300 clips of two feature sets written the import's way, plus 40 clips staged and committed as parts."""
    path = tmp_path_factory.mktemp("scale") / "big.zarr"
    rng = np.random.default_rng(0)
    with open_writer(path) as writer:
        for name, dim in (("small", 4), ("wide", 32)):
            writer.register_extractor({"extractor": name, "version": "1", "config": {}, "weights": "none", "dim": dim})
            clips = [(f"c{k:05d}", rng.standard_normal((k % 7 + 1, dim), dtype=np.float32),
                      np.stack([np.arange(k % 7 + 1.0), np.arange(k % 7 + 1.0) + 1], axis=1)) for k in range(N)]
            assert writer.append(name, clips) == N
            assert writer.append(name, clips[:10]) == 0  # already there: never written twice
        staging = writer.staging()
        for k in range(N, N + 40):
            writer.commit(staging.stage("small", f"c{k:05d}", np.full((2, 4), k, np.float32), np.array([[0.0, 1], [1, 2]]), "float32"))
        for k in range(N + 40):
            writer.set_clip({"clip_id": f"c{k:05d}", "status": "ok", "duration_s": 8.0})
    return path


def _per_clip_problems(store: FeatureStore) -> list[str]:
    """What verification finds reading each clip by itself (the reference for the slab reader)."""
    found = []
    for name in store.extractors():
        attrs = store.group_attrs(name)
        for clip_id, loc in store.index(name).items():
            found += [f"{name}/{clip_id}: {p}" for p in store._verify_clip(attrs, loc, *store._read_or_none(name, loc))]
    return found


def test_verify_in_slabs_finds_what_clip_by_clip_finds(big_store, tmp_path, monkeypatch):
    monkeypatch.setattr("mvfx.stores.base.VERIFY_SLAB_ROWS", 64)  # ~16 clips a slab: damage in the first, a middle and the last
    path = tmp_path / "damaged.zarr"
    shutil.copytree(big_store, path)
    store = open_store(path)
    assert store.verify() == [] and store.summary()["extractors"]["small"]["clips"] == N + 40
    root = zarr.open_group(str(path), mode="a")
    for clip_id, (name, row, value) in {"c00017": ("small", 0, 7.0), "c00150": ("wide", 1, np.nan),
                                        f"c{N - 1:05d}": ("wide", 0, np.inf)}.items():
        loc = store.index(name)[clip_id]
        root[f"features/{name}/values"][loc.offset + min(row, loc.count - 1), 0] = value
    problems = open_store(path).verify()
    assert sorted(problems) == sorted(_per_clip_problems(open_store(path)))
    assert any(p.startswith("small/c00017: checksum") for p in problems)
    assert any(p.startswith("wide/c00150: values hold NaN") for p in problems)
    assert any(p.startswith(f"wide/c{N - 1:05d}: values hold Inf") for p in problems)


def test_reads_and_exports_agree_with_the_index(big_store, tmp_path, monkeypatch):
    monkeypatch.setattr("mvfx.stores.exchange.SLAB_ROWS", 100)  # the export copies many slabs
    store = open_store(big_store)
    h5 = tmp_path / "big.h5"
    export_hdf5(store, h5)
    exported = open_store(h5)
    for name in ("small", "wide"):
        assert exported.clip_ids(name) == store.clip_ids(name)
        for clip_id in store.clip_ids(name)[::17] + [LAST_PART] * (name == "small"):
            np.testing.assert_array_equal(exported.read(name, clip_id)[0], store.read(name, clip_id)[0])
    assert exported.verify() == []
    np.testing.assert_array_equal(store.read("small", LAST_PART)[0], np.full((2, 4), N + 39, np.float32))


def test_compaction_appends_after_the_bulk_rows(big_store, tmp_path):
    path = tmp_path / "compacted.zarr"
    shutil.copytree(big_store, path)
    before = open_store(path)
    reference = {c: before.read("small", c)[0] for c in before.clip_ids("small")}
    with open_writer(path) as writer:
        assert LAST_PART in writer.done("small") and "c09999" not in writer.done("small")
        assert writer.compact() == 40
    after = open_store(path)
    assert after.summary()["extractors"]["small"]["uncompacted_parts"] == 0 and after.verify() == []
    for clip_id, values in reference.items():
        np.testing.assert_array_equal(after.read("small", clip_id)[0], values)


def _frame(records: list[dict]) -> pd.DataFrame:
    return to_frame(to_columns(records, CLIP_COLUMNS), CLIP_COLUMNS)


def test_record_table_keeps_changes_over_stored_rows():
    stored = [{"clip_id": "b", "status": "ok", "duration_s": 2.0}, {"clip_id": "a", "status": "failed", "duration_s": 1.0}]
    table = RecordTable(_frame(stored), CLIP_COLUMNS, ("clip_id",))
    assert not table.dirty and table.get("a")["status"] == "failed" and table.get("zz", {}) == {}
    table.set({"clip_id": "c", "status": "ok", "duration_s": 3.0})
    table.set({"clip_id": "a", "status": "ok", "duration_s": 1.0})
    table.pop("b")
    assert table.dirty and "b" not in table and "c" in table and len(table) == 2
    columns = table.columns()
    assert columns["clip_id"].tolist() == ["a", "c"] and columns["status"].tolist() == ["ok", "ok"]
    assert table.dirty and table.get("c")["duration_s"] == 3.0  # folded, not yet written
    tip = _frame([{"clip_id": "a", "status": "partial"}, {"clip_id": "d", "status": "ok"}])
    table.rebase(tip, lambda key: key == "c")  # another writer's tip; "c" is ours
    assert sorted(table.keys()) == ["a", "c", "d"] and table.get("a")["status"] == "partial"


def _csvs(folder: Path, n: int) -> None:
    folder.mkdir(exist_ok=True)
    for k in range(n):
        (folder / f"song_{k:03d}.csv").write_text(f"time,a,b\n0.0,{k},1\n0.5,{k + 1},2\n")


def test_a_repeat_import_skips_unchanged_files_and_refuses_changed_ones(tmp_path):
    folder, store = tmp_path / "csv", tmp_path / "imp.zarr"
    _csvs(folder, 30)
    first = import_feature_csvs(folder, "hand", store)
    assert (first.imported, first.skipped, first.problems) == (30, 0, [])
    again = import_feature_csvs(folder, "hand", store)
    assert (again.imported, again.skipped, again.problems) == (0, 30, [])
    (folder / "song_003.csv").write_text("time,a,b\n0.0,99,1\n0.5,98,2\n")
    (folder / "song_030.csv").write_text("time,a,b\n0.0,5,1\n0.5,6,2\n")
    third = import_feature_csvs(folder, "hand", store)
    assert (third.imported, third.skipped) == (1, 29)
    assert len(third.problems) == 1 and "song_003.csv: differs from the hand features" in third.problems[0]
    s = open_store(store)
    np.testing.assert_array_equal(s.read("hand", "song_003")[0], [[3, 1], [4, 2]])
    assert s.verify() == [] and s.failures()["error"].tolist() == ["ClipChanged"]


def test_an_import_refused_for_its_layout_changes_nothing(tmp_path):
    folder, store = tmp_path / "csv", tmp_path / "imp.zarr"
    _csvs(folder, 3)
    import_feature_csvs(folder, "hand", store)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.csv").write_text("time,a,b,c\n0.0,1,2,3\n0.5,1,2,3\n")
    with pytest.raises(MvfxError, match="made differently"):
        import_feature_csvs(other, "hand", store)
    s = open_store(store)
    assert s.clip_ids("hand") == ["song_000", "song_001", "song_002"] and "x" not in s.clips()["clip_id"].tolist()


def test_read_many_equals_reading_clip_by_clip(big_store):
    store = open_store(big_store)
    ids = store.clip_ids("small")  # id order, compacted clips then 40 parts
    shuffled = list(np.random.default_rng(1).permutation(ids))
    for order in (ids, shuffled, ids[5:9] + ids[-3:]):
        for clip_id, (values, times) in zip(order, store.read_many("small", order)):
            expected = store.read("small", clip_id)
            np.testing.assert_array_equal(values, expected[0])
            np.testing.assert_array_equal(times, expected[1])
    with pytest.raises(MvfxError, match="no small features for clip 'nope'"):
        list(store.read_many("small", ["c00001", "nope"]))
