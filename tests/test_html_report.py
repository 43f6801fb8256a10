"""The offline HTML reports (`mvfx store report`, `mvfx report --html`): pages checked with a parser everywhere,
and in a real browser (the system Chromium, driven by Playwright) where one is installed.

The store of the store report is written directly (a few clips, two feature sets, failures at three stages, a clip
whose file is gone, a damaged clip, ids that need escaping), so those tests take seconds, not an extraction. The runs
of the runs report are real: every kind of run made by its own `mvfx train` command on a small extracted store.
"""
from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from helpers import run_cli, tone

from mvfx.heads.report import comparison_table, read_run
from mvfx.media.encode import write_mp4
from mvfx.reports import select_clips, write_store_report
from mvfx.stores import open_store, open_writer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _no_browser() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium); the parser tests still check the pages"
    return None


NO_BROWSER = _no_browser()
needs_browser = pytest.mark.skipif(NO_BROWSER is not None, reason=NO_BROWSER or "")

ODD_ID = "set 2/clip é"  # a '/' and a space and a non-ASCII letter: its page needs a safe file name
HTML_ID = "<b>bold</b>"  # must show as text, never as markup


def _write_store(path: Path, media: Path) -> Path:
    """Five clips: one whose file exists, one whose file is gone, a damaged one, two odd ids; a 3-d named set
    (drawn as lines) and a 48-d embedding with random weights (a heat map); failures at probe, decode, extract."""
    media.mkdir(parents=True, exist_ok=True)
    video = media / "present.mp4"
    write_mp4(video, (np.full((48, 64, 3), 30 * k % 255, np.uint8) for k in range(24)), 12, tone(2.0))
    rng = np.random.default_rng(0)
    with open_writer(path) as writer:
        writer.register_extractor({"extractor": "mood", "version": "2", "dim": 3, "feature_names": ["valence", "arousal", "tension"],
                                   "weights": "none", "config": {}, "time_grid": {"kind": "window", "window_s": 0.5, "hop_s": 0.5}})
        writer.register_extractor({"extractor": "embed", "version": "1", "dim": 48, "feature_names": None, "weights": "random",
                                   "config": {"layers": 2}, "time_grid": {"kind": "frame", "window_s": 1.0, "hop_s": 1.0}})
        clips = {"present": (video, 2.0, 0), "gone": (media / "deleted.mp4", 3.0, 0), "damaged": (media / "deleted2.mp4", 3.0, 4),
                 ODD_ID: (media / "odd.mp4", 2.0, 0), HTML_ID: (media / "html.mp4", 2.0, 0)}
        mood, embed = [], []
        for clip_id, (file, seconds, damaged) in clips.items():
            steps = int(seconds / 0.5)
            times = np.stack([np.arange(steps) * 0.5, np.arange(1, steps + 1) * 0.5], axis=1)
            mood.append((clip_id, rng.normal(size=(steps, 3)).astype(np.float32), times))
            if clip_id != "gone":
                embed.append((clip_id, rng.normal(size=(steps // 2, 48)).astype(np.float32), times[::2] * [1, 2]))
            writer.set_clip({"clip_id": clip_id, "path": str(file), "size_bytes": os.path.getsize(video), "duration_s": seconds,
                             "has_video": True, "has_audio": True, "fps": 12.0, "width": 64, "height": 48, "video_codec": "h264",
                             "sample_rate": 44100, "channels": 2, "audio_codec": "aac", "status": "ok", "damaged_packets": damaged,
                             "damaged_spans": "0.50-0.90" if damaged else "", "missing_spans": ""})
        writer.append("mood", mood)
        writer.append("embed", embed)
        writer.add_failure("gone", "embed", "extract", "RuntimeError", "out of memory <in> the embedding & more")
        writer.add_failure("unreadable", "*", "probe", "ClipError", "unreadable.mp4: not a readable media file")
        writer.add_failure("truncated", "*", "decode", "ClipError", "truncated.mp4: video stream holds no decodable frame")
    if video.exists():
        (media / "deleted.mp4").unlink(missing_ok=True)
    return path


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_store")
    return _write_store(root / "small.zarr", root / "media")


@pytest.fixture(scope="module")
def store_report(store_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "site"
    result = run_cli("store", "report", store_path, "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and "index.html" in result.stderr
    return out


def _train(*args: object) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs_report(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A run folder of every kind, each made by its real `mvfx train` command (tiny recipes) on a 12-clip store of
    2-second demo clips (2 per class), a `mvfx predict` below the LASSO run, and their report. The pairs: each two
    clips matched with themselves and swapped with each other (six groups of four pairs)."""
    import pandas as pd

    from mvfx.pipeline.demo_corpus import write_demo_corpus
    from mvfx.pipeline.run import run_extract

    root = tmp_path_factory.mktemp("runs")
    corpus, store = root / "corpus", root / "s.zarr"
    write_demo_corpus(corpus, n_clips=12, seconds=2.0, seed=3, size=(96, 64))
    assert run_extract(str(corpus), str(store), ["colour", "emobase", "logmel_phase", "frames"], options={"frames": {"n_frames": "8"}},
                       workers=1).ok
    label = dict(pd.read_csv(corpus / "labels.csv")[["clip_id", "label"]].values)
    clips = sorted(label)
    pd.DataFrame([{"video_clip": v, "music_clip": m, "video_label": label[v], "music_label": label[m], "match": int(v == m)}
                  for a, b in zip(clips[::2], clips[1::2]) for v, m in ((a, a), (b, b), (a, b), (b, a))]).to_csv(root / "pairs.csv", index=False)
    ratings, classes = ("--labels", corpus / "annotations.csv", "--folds", 2), ("--labels", corpus / "labels.csv", "--folds", 2)
    tiny = ("--frame-size", 16, "--device", "cpu")
    _train("train", "lasso", store, *ratings, "-f", "colour", "--out", root / "lasso")
    _train("train", "lstm", store, *ratings, "-f", "colour,emobase", "--fusion", "late", "--hidden", 8, "--epochs", 2, "--out", root / "lstm")
    _train("train", "fusion", store, *classes, "-f", "colour", "--ensemble", "emobase", "--member-model", "logistic", "--out", root / "fusion")
    _train("train", "autoencoder", store, "--music", "A2", "--video", "A2", "--epochs", 1, *tiny, "--out", root / "autoencoder")
    _train("train", "mvf", store, *classes, "--music", "A2", "--video", "A2", "--mmtm", "--init-from", root / "autoencoder", "--epochs", 1,
           "--music-frames", 32, *tiny, "--out", root / "mvf")
    _train("train", "correspond", store, "--pairs", root / "pairs.csv", "--video-features", "colour", "--music-features", "emobase",
           "--epochs", 2, "--folds", 2, "--out", root / "correspond")
    _train("predict", root / "lasso", store, "--out", root / "lasso" / "predictions" / "unseen", "--timelines", 1)
    runs = [root / name for name in ("lasso", "lstm", "fusion", "mvf", "autoencoder", "correspond")]
    out = root / "html"
    result = run_cli("report", *runs, "--html", out)
    assert result.exit_code == 0, result.output
    return out, runs


# --- checked with a parser ---------------------------------------------------------------------------------------

class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self.lang, self.links, self.sources, self.images, self.head_cells, self._in = "", None, [], [], [], [], []
        self.scripts, self.labels, self.controls = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in.append(tag)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag in ("img", "script") and "src" in a:
            self.sources.append(a["src"])
        if tag == "link" and "href" in a:
            self.sources.append(a["href"])
        if tag == "img":
            self.images.append(a)
        if tag == "th":
            self.head_cells.append(a)
        if tag == "label":
            self.labels.add(a.get("for"))
        if tag in ("input", "select"):
            self.controls.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass

    def handle_data(self, data):
        if self._in and self._in[-1] == "title":
            self.title += data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _local(page: Path, ref: str, root: Path) -> Path | None:
    """The file a relative reference points at (None for an in-page anchor or a data: URL)."""
    if ref.startswith(("#", "data:")):
        return None
    parts = urlsplit(ref)
    assert not parts.scheme and not parts.netloc, f"{page.name}: {ref} leaves the report"
    target = (page.parent / unquote(parts.path)).resolve()
    assert target.is_relative_to(root.resolve()), f"{page.name}: {ref} points outside the report folder"
    return target


def _check_site(root: Path) -> list[Path]:
    pages = sorted(root.rglob("*.html"))
    assert pages
    for path in pages:
        page = _parse(path)
        assert page.lang == "en" and page.title.strip(), f"{path}: no lang or title"
        for ref in page.links + page.sources:
            target = _local(path, ref, root)
            assert target is None or target.is_file(), f"{path.relative_to(root)}: {ref} does not exist"
        for image in page.images:
            assert image.get("alt", "").strip(), f"{path.relative_to(root)}: <img src={image.get('src')}> has no alt text"
        for cell in page.head_cells:
            assert cell.get("scope") in ("col", "row"), f"{path.relative_to(root)}: a <th> without scope"
        for control in page.controls:
            assert control in page.labels, f"{path.relative_to(root)}: control #{control} has no <label>"
    for path in root.rglob("*"):
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), f"{path}: refers to the network"
            assert "@import" not in text and "url(http" not in text
    return pages


def test_store_report_pages_link_only_to_files_inside_it(store_report):
    pages = _check_site(store_report)
    names = {p.relative_to(store_report).as_posix() for p in pages}
    assert {"index.html", "failures.html", "clips/present.html", "clips/gone.html"} <= names
    assert (store_report / "static" / "table.js").is_file() and (store_report / "failures.csv").is_file()


def test_index_shows_provenance_extractors_and_counts(store_report, store_path):
    html = (store_report / "index.html").read_text()
    assert "mvfx-feature-store version 2" in html and "not an Icechunk store" in html
    for cell in ("mood", "embed", ">48<", "random", "window, window 0.5 s, hop 0.5 s", "frame, window 1 s, hop 1 s"):
        assert cell in html, cell
    assert "3 failures</a> in 3 clips" in html
    assert "damaged clips</th><td>1 " in html and "0.50-0.90" in html
    assert "random weights" in html  # the dry-run mark every reader of the store shows


def test_every_clip_page_has_a_time_line_per_extractor_and_the_record(store_report):
    page = (store_report / "clips" / "present.html").read_text()
    assert (store_report / "clips" / "present" / "mood.png").stat().st_size > 1000
    assert (store_report / "clips" / "present" / "embed.png").stat().st_size > 1000
    assert "3 dimensions (valence, arousal, tension) as lines" in page
    assert "heat map of 48 dimensions" in page
    assert "h264, 64x48, 12 fps" in page and "aac, 44100 Hz, 2 channels" in page
    assert (store_report / "clips" / "present" / "frames.png").is_file() and (store_report / "clips" / "present" / "waveform.png").is_file()
    assert "frames of present: 6 frames decoded at" in page


def test_a_clip_whose_file_is_gone_gets_a_note_and_its_failure(store_report):
    page = (store_report / "clips" / "gone.html").read_text()
    assert "no longer at" in page and "deleted.mp4" in page
    assert not (store_report / "clips" / "gone" / "frames.png").exists()
    assert "failed: out of memory &lt;in&gt; the embedding &amp; more" in page  # the failure, escaped


def test_clip_ids_are_escaped_and_get_safe_file_names(store_report):
    pages = {p.name for p in (store_report / "clips").glob("*.html")}
    odd = [p for p in pages if p.startswith("set_2_clip")]
    assert len(odd) == 1 and re.fullmatch(r"[A-Za-z0-9._-]+\.html", odd[0])
    index = (store_report / "index.html").read_text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in index and "<b>bold</b>" not in index


def test_failures_table_has_filters_for_stage_and_extractor(store_report):
    html = (store_report / "failures.html").read_text()
    for option in ('<option value="probe">', '<option value="decode">', '<option value="extract">', '<option value="*">',
                   '<option value="embed">'):
        assert option in html
    assert '<label for="stage-filter">' in html and '<label for="extractor-filter">' in html
    assert html.count("<tr><th scope=\"row\">") == 3
    assert 'href="clips/gone.html"' in html  # a failed clip with a page is linked


def test_clip_selection_is_deterministic_capped_and_stated():
    ids = [f"c{k:05d}" for k in range(1000)]
    failed = [f"c{k:05d}" for k in range(0, 1000, 7)] + ["not_in_table"]
    chosen, how = select_clips(ids, failed, sample=50, failed=20)
    assert chosen == select_clips(list(reversed(ids)), failed, sample=50, failed=20)[0]
    assert 50 < len(chosen) <= 70 and chosen == sorted(chosen)
    assert "50 of 1000 clips sampled deterministically" in how and "--failed-clips 20" in how
    bigger, _ = select_clips([*ids, "c99999"], failed, sample=50, failed=0)
    assert len(set(bigger) & set(select_clips(ids, failed, sample=50, failed=0)[0])) >= 49  # a new clip moves the sample by one at most
    assert select_clips(ids, failed, given=["c00003", "c00001"])[0] == ["c00001", "c00003"]
    assert select_clips(ids, [], sample=None)[0] == ids
    from mvfx.media.errors import MvfxError

    with pytest.raises(MvfxError, match="--clip 'nope': no such clip"):
        select_clips(ids, failed, given=["nope"])


def test_clips_and_clip_options_choose_the_pages(store_path, tmp_path):
    result = run_cli("store", "report", store_path, "--out", tmp_path / "one", "--clip", "damaged", "--no-media")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "one" / "clips").glob("*.html")] == ["damaged.html"]
    assert "(--no-media)" in (tmp_path / "one" / "clips" / "damaged.html").read_text()
    result = run_cli("store", "report", store_path, "--out", tmp_path / "few", "--clips", "1", "--failed-clips", "0", "--no-media")
    assert result.exit_code == 0 and len(list((tmp_path / "few" / "clips").glob("*.html"))) == 1
    assert "--clips N|all" in run_cli("store", "report", "--help").output and "[default: 50]" in run_cli("store", "report", "--help").output


def test_the_out_folder_is_replaced_when_it_is_a_report_and_refused_otherwise(store_path, tmp_path):
    out = tmp_path / "site"
    assert run_cli("store", "report", store_path, "--out", out, "--clips", "2", "--no-media").exit_code == 0
    (out / "clips" / "stale.html").write_text("old")
    assert run_cli("store", "report", store_path, "--out", out, "--clip", "present", "--no-media").exit_code == 0
    assert not (out / "clips" / "stale.html").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = run_cli("store", "report", store_path, "--out", other)
    assert result.exit_code == 2 and "not a report mvfx wrote" in result.stderr
    assert (other / "notes.txt").read_text() == "keep me"


def test_an_icechunk_store_reports_its_commit(tmp_path):
    path = _write_store(tmp_path / "s.icechunk", tmp_path / "media")
    store = open_store(path)
    assert store.commit_id
    result = write_store_report(store, tmp_path / "site", sample=1, failed=0, media=False)
    assert store.commit_id in (tmp_path / "site" / "index.html").read_text()
    assert result.pages == 3 and result.bytes > 0


def test_an_exported_hdf5_file_reports_as_the_store_did(store_path, tmp_path):
    from mvfx.stores.exchange import export_hdf5

    export_hdf5(open_store(store_path), tmp_path / "small.h5")
    result = run_cli("store", "report", tmp_path / "small.h5", "--out", tmp_path / "site", "--clip", "present", "--no-media")
    assert result.exit_code == 0, result.output
    assert "mood v2 of present" in (tmp_path / "site" / "clips" / "present.html").read_text()
    _check_site(tmp_path / "site")


def test_runs_report_has_the_cli_table_metrics_plots_and_predictions(runs_report):
    out, runs = runs_report
    _check_site(out)
    headers, body = comparison_table([read_run(r) for r in runs])
    for group in (runs[:2], runs[2:4] + runs[5:], runs[4:5]):  # runs of one task, as they are compared
        printed = run_cli("report", *group).stdout
        words = set(re.findall(r"[\w-]+", printed))
        for title in comparison_table([read_run(r) for r in group])[0]:  # the columns the HTML shows (a title may wrap)
            assert set(re.findall(r"[\w-]+", title)) <= words, title
    assert headers == ["run", "model", "features", "target", "CCC", "r", "RMSE", "accuracy", "macro F1", "ROC AUC", "reconstruction MSE",
                       "inter-rater CCC", "clips"]
    shown = {row[0]: dict(zip(headers, row)) for row in body}
    scores = {"lasso": ("CCC", "r", "RMSE"), "lstm": ("CCC", "r", "RMSE"), "fusion": ("accuracy", "macro F1", "ROC AUC"),
              "mvf": ("accuracy", "macro F1", "ROC AUC"), "correspond": ("accuracy", "macro F1", "ROC AUC"), "autoencoder": ("reconstruction MSE",)}
    for run, columns in scores.items():  # every kind of run shows its own scores, and only those
        for title in headers[4:11]:
            assert (re.fullmatch(r"-?\d\.\d{3}( ± \d\.\d{3})?", shown[run][title]) is not None) == (title in columns), (run, title, shown[run][title])
    assert shown["lstm"]["model"] == "lstm (late)" and shown["lasso"]["inter-rater CCC"] != "-" and shown["mvf"]["clips"] == "12"
    index = (out / "index.html").read_text()
    assert all(f">{h}<" in index for h in ("run", "CCC", "accuracy", "ROC AUC", "reconstruction MSE", "inter-rater CCC"))
    assert all(shown[run]["CCC"] in index for run in ("lasso", "lstm"))
    lasso = (out / "runs" / "lasso.html").read_text()
    assert "trajectories.png" in lasso and (out / "runs" / "lasso" / "trajectories.png").is_file()
    assert "colour:" in lasso and "mean predicted" in lasso  # coefficients; predictions averaged per clip
    assert "mvfx predict: predictions/unseen" in lasso and len(list((out / "runs" / "lasso" / "predicted-0" / "timelines").glob("*.png"))) == 1
    fusion = (out / "runs" / "fusion.html").read_text()
    assert "confusion matrix" in fusion and "ROC" in fusion and "ensemble (main)" in fusion and ">colour<" in fusion
    assert (out / "runs" / "fusion" / "predictions.csv").is_file()
    mvf = (out / "runs" / "mvf.html").read_text()
    assert "pretrained (main)" in mvf and ">scratch<" in mvf and ">epochs<" in mvf
    assert "reconstruction MSE per epoch" in (out / "runs" / "autoencoder.html").read_text()
    correspond = (out / "runs" / "correspond.html").read_text()
    assert "retrieval, video to music" in correspond and "top-1" in correspond and ">test_pairs<" in correspond


def test_a_run_folder_written_before_the_metrics_format_still_reports(runs_report, tmp_path):
    """metrics.json version 1 (no format field; MVF's scores under runs, a fusion's per model): read into the format."""
    old = tmp_path / "old_mvf"
    old.mkdir()
    stat = {"mean": 0.5, "std": 0.1, "defined": 2, "folds": 2}
    scores = {"accuracy": stat, "f1": stat, "roc_auc": stat}
    (old / "config.json").write_text(json.dumps({"model": "mvf", "features": ["frames"], "task": "emotion class"}))
    (old / "metrics.json").write_text(json.dumps({"main": "scratch", "aggregate": scores, "pooled": {}, "n_clips": 6, "folds": [
        {"accuracy": 0.4, "epochs": 3}, {"accuracy": 0.6, "epochs": 2}], "runs": {"scratch": {"aggregate": scores, "pooled": {}}}}))
    assert read_run(old)["metrics"]["accuracy"] == stat  # version 1 of MVF runs showed no score at all
    result = run_cli("report", old, runs_report[1][2], "--html", tmp_path / "html")
    assert result.exit_code == 0, result.output
    assert "0.500 ± 0.100" in result.stdout and ">epochs<" in (tmp_path / "html" / "runs" / "old_mvf.html").read_text()
    (old / "metrics.json").write_text(json.dumps({"format": "mvfx-metrics", "format_version": 9}))
    refused = run_cli("report", old)
    assert refused.exit_code == 2 and "format mvfx-metrics v9; this mvfx reads mvfx-metrics v1 and v2" in refused.stderr


# --- checked in a browser ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class _Watch:
    """A page that records console errors, script errors, failed requests and any request that is not file://."""

    def __init__(self, browser) -> None:
        self.page = browser.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("request", lambda r: r.url.startswith(("file://", "data:")) or self.problems.append(f"network: {r.url}"))

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")


def _crawl(watch: _Watch, root: Path) -> set[Path]:
    """Visit the index and every page it leads to; every link is opened, every image must have loaded."""
    seen: set[Path] = set()
    todo = [root / "index.html"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        assert path.is_file(), f"a link leads to {path}, which does not exist"
        watch.open(path)
        broken = watch.page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert broken == [], f"{path}: images not shown {broken}"
        hrefs = watch.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        for href in hrefs:
            url = urlsplit(href)
            assert url.scheme == "file", f"{path}: link to {href}"
            target = Path(unquote(url.path))
            if target.suffix == ".html":
                todo.append(target)
            else:  # a CSV: the browser would download it, so it is checked on disk
                assert target.is_file(), f"{path}: {href} does not exist"
    return seen


@needs_browser
def test_in_a_browser_every_link_resolves_with_no_error_and_no_network(browser, store_report):
    watch = _Watch(browser)
    pages = _crawl(watch, store_report)
    assert watch.problems == []
    assert len(pages) == len(list(store_report.rglob("*.html")))


@needs_browser
def test_in_a_browser_a_clip_page_shows_its_time_lines(browser, store_report):
    watch = _Watch(browser)
    watch.open(store_report / "clips" / "present.html")
    sizes = watch.page.eval_on_selector_all("#features-mood img, #features-embed img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == 2 and all(w > 100 and h > 50 for w, h in sizes)
    alt = watch.page.get_attribute("#features-mood img", "alt")
    assert "valence" in alt
    assert watch.page.title() == "Clip present · mvfx report"
    assert watch.problems == []


@needs_browser
def test_in_a_browser_the_failures_table_filters_and_sorts_from_the_keyboard(browser, store_report):
    watch = _Watch(browser)
    watch.open(store_report / "failures.html")
    page = watch.page
    shown_rows = "rows => rows.filter(r => !r.hidden).map(r => r.cells[0].textContent.trim())"
    visible = lambda: page.eval_on_selector_all("#failure-table tbody tr", shown_rows)  # noqa: E731
    assert sorted(visible()) == ["gone", "truncated", "unreadable"]
    assert page.text_content("[data-status]") == "3 of 3 failures shown"
    page.select_option("#stage-filter", "probe")
    assert visible() == ["unreadable"] and page.text_content("[data-status]") == "1 of 3 failures shown"
    page.select_option("#stage-filter", "")
    page.select_option("#extractor-filter", "*")
    assert sorted(visible()) == ["truncated", "unreadable"]
    page.select_option("#extractor-filter", "")
    page.fill("#failure-text", "memory")
    assert visible() == ["gone"]
    page.fill("#failure-text", "")
    # sort by clip with the keyboard: Tab reaches the header's button, Enter presses it
    page.focus("#failure-text")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "clip"
    page.keyboard.press("Enter")
    assert visible() == ["gone", "truncated", "unreadable"]
    assert page.get_attribute("#failure-table thead th:first-child", "aria-sort") == "ascending"
    page.keyboard.press("Enter")
    assert visible() == ["unreadable", "truncated", "gone"]
    assert watch.problems == []


@needs_browser
def test_in_a_browser_the_runs_report_resolves_and_sorts(browser, runs_report):
    out, runs = runs_report
    watch = _Watch(browser)
    pages = _crawl(watch, out)
    assert len(pages) == 1 + len(runs)
    watch.open(out / "index.html")
    page = watch.page
    page.click("#runs-table thead th:nth-child(5) button")  # CCC, ascending: '-' (the runs without one) last
    order = page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.cells[0].textContent.trim())")
    regression = sorted(("lasso", "lstm"), key=lambda r: read_run(out.parent / r)["metrics"]["ccc"]["mean"])
    assert order[:2] == regression and sorted(order[2:]) == sorted(r.name for r in runs if r.name not in regression)
    assert watch.problems == []
