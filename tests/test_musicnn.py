"""musicnn and musicnn_tags: musicnn's real weights read from its wheel (no TensorFlow), on real music.

The comparison with the original TensorFlow graph is ``test_the_port_matches_the_original_graph``: it needs a
separate TensorFlow environment (MVFX_TF_PYTHON; docs/extractors.md says how to make one) and skips without it.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import REPO, SHARED_DATA, run_cli

from mvfx.extractors import create
from mvfx.extractors.base import FeatureBlock
from mvfx.extractors.melspec import power_mel
from mvfx.extractors.musicnn import HOP, N_FFT, PATCH_S, SAMPLE_RATE, TagLogits, log_mel, patch_blocks, patch_times
from mvfx.extractors.streams import WholeAudio
from mvfx.extractors.tensorbundle import read_bundle
from mvfx.extractors.weight_registry import REGISTRY
from mvfx.extractors.weights import require, status
from mvfx.media.decode import AudioSpec, decode
from mvfx.media.encode import write_mp4
from mvfx.media.errors import MvfxError
from mvfx.media.probe import probe
from mvfx.pipeline.streaming import stream_pass
from mvfx.stores import open_store

TRACKS = {  # the four tracks of ../shared/data/music, with the number of 2.992 s patches each has
    "Vibe Ace": ("Kevin_MacLeod_-_Vibe_Ace.hq.ogg", 20),
    "Lets Go Fishin": ("Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg", 44),
    "Hungarian Dance": ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg", 15),
    "Tchaikovsky": ("Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg", 40),
}
TF_PYTHON = Path(os.environ.get("MVFX_TF_PYTHON", REPO.parent / "tfref" / "bin" / "python"))
MUSICNN = importlib.util.find_spec("musicnn")
needs_wheel = pytest.mark.skipif(MUSICNN is None, reason="the musicnn wheel is not installed (`make setup` installs it)")


@pytest.fixture(scope="module")
def music() -> dict[str, tuple[Path, np.ndarray]]:
    """Each track's path and its 16 kHz mono audio as mvfx decodes it."""
    folder = SHARED_DATA / "music"
    if not folder.is_dir():
        pytest.skip(f"real music not found at {folder} (the shared/ folder beside the repo)")
    spec = AudioSpec(SAMPLE_RATE)
    return {name: (folder / file, decode(probe(str(folder / file)), {spec}, set()).audio[spec]) for name, (file, _) in TRACKS.items()}


@pytest.fixture(scope="module")
def embedded(music) -> dict[str, FeatureBlock]:
    """musicnn (MSD, real weights) on every patch of the four tracks."""
    if MUSICNN is None:
        pytest.skip("the musicnn wheel is not installed (`make setup` installs it)")
    extractor = create("musicnn")
    extractor.setup("cpu")
    return {name: extractor.extract(audio, None, {}) for name, (_, audio) in music.items()}


@pytest.fixture(scope="module")
def excerpt(music, tmp_path_factory) -> Path:
    """The first 9 s of Hungarian Dance (three patches) as an AAC file, for runs through the pipeline."""
    path = tmp_path_factory.mktemp("excerpt") / "dance.mp4"
    write_mp4(path, None, 25, music["Hungarian Dance"][1][None, : 9 * SAMPLE_RATE], SAMPLE_RATE)
    return path


def tags_of(block: FeatureBlock) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-block.detail.logits.astype(np.float64)))


@needs_wheel
@pytest.mark.parametrize("model", ["msd", "mtt"])
def test_the_wheels_checkpoint_reads_without_tensorflow(model):
    assert status(f"musicnn_{model}")[0] == "packaged"  # a fresh cache: the wheel's copy is found, nothing written
    tensors = read_bundle(require(f"musicnn_{model}_index")[0], require(f"musicnn_{model}")[0])
    assert status(f"musicnn_{model}")[0] == "ok"  # the first use copied it in, and its sha256 is the registry's
    assert len(tensors) == 150  # the network's 72 variables, Adam's two slots for 70 of them, and its two powers
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204) and tensors["dense_1/kernel"].shape == (200, 50)
    assert all(t.dtype == np.float32 and np.isfinite(t).all() for t in tensors.values())


def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_it(tmp_path):
    index, data = tmp_path / "x.index", tmp_path / "x.data-00000-of-00001"
    index.write_bytes(b"not a table" * 10)
    data.write_bytes(b"")
    with pytest.raises(MvfxError) as caught:
        read_bundle(index, data)
    assert str(caught.value).startswith(f"{index}: not a TensorFlow checkpoint") and "\n" not in str(caught.value)


def test_the_mel_spectrogram_is_librosas_bit_for_bit(music):
    import librosa

    from mvfx.extractors.base import single_threaded_blas

    audio = music["Vibe Ace"][1]
    with single_threaded_blas():
        reference = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=96).T
        ours = power_mel(np.pad(audio, N_FFT // 2), SAMPLE_RATE, N_FFT, HOP, 96)
    np.testing.assert_array_equal(ours, reference)


def test_the_log_is_taken_in_float32_so_nothing_overflows(music):
    audio = music["Vibe Ace"][1]
    with np.errstate(over="ignore"):  # musicnn's own line under NumPy 2: the float16 product overflows
        float16 = np.log10(10000 * power_mel(np.pad(audio, N_FFT // 2), SAMPLE_RATE, N_FFT, HOP, 96).astype(np.float16) + 1)
    ours = log_mel(audio)
    assert np.isinf(float16).sum() > 1000 and np.isfinite(ours).all()
    finite = np.isfinite(float16)
    np.testing.assert_allclose(ours[finite], float16[finite], atol=4e-3)  # elsewhere: float16's rounding only


@needs_wheel
@pytest.mark.parametrize("model", ["msd", "mtt"])
def test_the_tag_names_are_musicnns_own(model):
    source = Path(MUSICNN.submodule_search_locations[0]) / "configuration.py"
    labels = {t.id: ast.literal_eval(node.value) for node in ast.parse(source.read_text()).body
              if isinstance(node, ast.Assign) for t in node.targets}
    assert create("musicnn_tags", model=model).feature_names == labels[f"{model.upper()}_LABELS"]


def test_every_patch_of_the_four_tracks_gets_its_own_embedding_and_tags(embedded):
    for name, block in embedded.items():
        n = TRACKS[name][1]
        assert block.values.shape == (n, 200) and np.isfinite(block.values).all(), name
        np.testing.assert_allclose(block.times[:, 0], np.arange(n) * PATCH_S)
        assert len(np.unique(block.values, axis=0)) == n, f"{name}: two patches have the same embedding"
        assert tags_of(block).std(axis=0).max() > 0.05, f"{name}: the taggram hardly moves"  # the original's: 9e-9


def test_the_tags_make_sense_for_the_music(embedded):
    """Real weights, not random ones: the jazz track is tagged jazz, the sung one female vocalists."""
    names = REGISTRY["musicnn_msd"].category_names()
    top = {name: names[int(np.argmax(tags_of(block).mean(axis=0)))] for name, block in embedded.items()}
    assert top["Vibe Ace"] == "jazz" and top["Lets Go Fishin"] == "female vocalists"


def test_a_clip_shorter_than_a_patch_gets_one_row_over_all_of_it_and_the_hop_is_an_option(music):
    audio = music["Hungarian Dance"][1]
    starts, times = patch_times(2 * SAMPLE_RATE, 187)
    assert starts.tolist() == [0] and times.tolist() == [[0.0, 2.0]]
    (patch,) = patch_blocks(log_mel(audio[: 2 * SAMPLE_RATE]), starts)
    assert patch.shape == (1, 187, 96)
    np.testing.assert_array_equal(patch[0, 126:], patch[0, : 187 - 126])  # 2 s is 126 frames, then it repeats
    extractor = create("musicnn", hop_s=1.0)
    assert extractor.time_grid.hop_s == 62 * 0.016  # whole frames
    starts, times = patch_times(len(audio), extractor.hop_frames)
    assert np.allclose(np.diff(times[:, 0]), 0.992) and times[-1, 1] <= len(audio) / SAMPLE_RATE + 0.016


@needs_wheel
def test_the_tags_take_the_embeddings_forward_pass(excerpt, monkeypatch):
    info = probe(str(excerpt))
    audio = decode(info, {AudioSpec(SAMPLE_RATE)}, set()).audio[AudioSpec(SAMPLE_RATE)]
    embedding, tags = create("musicnn"), create("musicnn_tags")
    for extractor in (embedding, tags):
        extractor.setup("cpu")
    alone = tags.extract(audio, info, {})  # nothing to share: its own network
    assert alone.values.shape == (3, 50)
    monkeypatch.setattr(tags, "embed", lambda audio: pytest.fail("musicnn_tags ran the network a second time"))
    outcome = stream_pass(info, [tags, embedding], {})
    assert not outcome.errors
    np.testing.assert_allclose(outcome.blocks["musicnn_tags"].values, alone.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outcome.blocks["musicnn_tags"].times, outcome.blocks["musicnn"].times)
    mtt = create("musicnn_tags", model="mtt")  # another model: the msd logits are not taken
    mtt.setup("cpu")
    shared = outcome.blocks["musicnn"]
    assert isinstance(shared.detail, TagLogits)
    assert mtt.extract(audio, info, {"musicnn": shared}).values.shape == alone.values.shape


def test_audio_in_more_than_one_piece_is_refused(music):
    stream = WholeAudio(create("musicnn"), None, {})
    stream.extractor.extract = lambda data, info, context: FeatureBlock(np.zeros((1, 200)), np.zeros((1, 2)))
    stream.feed(np.zeros(16000, np.float32), {})
    with pytest.raises(ValueError, match="more than one piece"):
        stream.feed(np.zeros(16000, np.float32), {})


@needs_wheel
def test_extract_runs_real_weights_with_no_flag_and_records_their_hash(excerpt, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dance.mp4").symlink_to(excerpt)
    store = tmp_path / "features.zarr"
    result = run_cli("extract", corpus, "--store", store, "-e", "musicnn_tags", "--workers", "1")
    assert result.exit_code == 0, result.output
    reader = open_store(str(store))
    for name in ("musicnn", "musicnn_tags"):  # the tags need the embedding: it is made (and stored) too
        assert reader.attrs(name)["weights"] == "sha256:" + REGISTRY["musicnn_msd"].sha256
        assert reader.read(name, "dance")[0].shape[0] == 3
    listing = run_cli("extractors", "--json")
    rows = {row["name"]: row for row in json.loads(listing.output)}
    assert rows["musicnn"]["weights"] == rows["musicnn_tags"]["weights"] == {"musicnn_msd": "ok", "musicnn_msd_index": "ok"}


@pytest.mark.slow
def test_the_port_matches_the_original_graph(music, embedded, tmp_path):
    """musicnn's own batch_data and TensorFlow graph, run in their environment, on every patch of the four tracks."""
    if not TF_PYTHON.is_file():
        pytest.skip(f"no TensorFlow environment for the reference at {TF_PYTHON} (set MVFX_TF_PYTHON; docs/extractors.md)")
    wavs = []
    for k, (_, audio) in enumerate(music.values()):
        wavs.append(tmp_path / f"{k}.wav")
        soundfile.write(wavs[-1], audio, SAMPLE_RATE, subtype="FLOAT")  # the samples mvfx decoded, exactly
    out = tmp_path / "reference.npz"
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}  # librosa's mel product summed as ours (single_threaded_blas)
    proc = subprocess.run([str(TF_PYTHON), str(REPO / "tests" / "musicnn_reference.py"), "MSD_musicnn", str(out), *map(str, wavs)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = np.load(out)
    for k, (name, (_, audio)) in enumerate(music.items()):
        starts = patch_times(len(audio), 187)[0]
        logmel = np.concatenate(list(patch_blocks(log_mel(audio), starts)))
        assert np.abs(logmel - reference[f"{k}/logmel"]).max() <= 1e-5, name
        ours = embedded[name]
        assert np.abs(tags_of(ours) - reference[f"{k}/taggram"]).max() <= 1e-4, name
        theirs = reference[f"{k}/penultimate"]
        cosine = (ours.values * theirs).sum(1) / np.linalg.norm(ours.values, axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosine.min() >= 0.9999, name
    overflowed = reference["0/inf_cells"] > 0  # Vibe Ace under musicnn's own extractor as NumPy 2 runs it: every patch
    broken = reference["0/taggram_numpy2"][overflowed]  # NaN here (TF 2.21 on an AMD EPYC), one constant row elsewhere
    assert overflowed.all() and (np.isnan(broken).all() or broken.std(axis=0).max() < 1e-6)
