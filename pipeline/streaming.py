"""One decoding pass over a clip, streamed through every extractor that reads it.

The decoder runs in a helper thread (FFmpeg releases the GIL) and hands
pieces of frames through a queue two pieces deep, so decoding overlaps the
extractors while what is held stays bounded: per video request, the piece
being decoded, two queued and the one being processed, plus what each
extractor's stream keeps (its window). ``memory_needed`` turns that bound
into bytes before a clip is opened, so a clip that cannot fit (an 8K
source asked for at full size) fails with one line instead of taking its
worker down.

Pieces are ``PIECE_FRAMES`` frames, rounded up to a multiple of every
consumer's batch (``frames_per_batch``): the streamed batches are then the
whole-clip batches and the features are bitwise the same.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mvfx.extractors.base import Extractor, FeatureBlock
from mvfx.media.decode import ClipDecoder, Damage, VideoSpec
from mvfx.media.errors import ClipError
from mvfx.media.hwdecode import CPU_DECODER, DecoderChoice
from mvfx.media.probe import ClipInfo
from mvfx.pipeline.executor import local_cores
from mvfx.pipeline.timing import DECODING, WAITING, forward_stage, timed_items, timing

PIECE_FRAMES = 16  # at least this many frames per piece (more where a batch needs it)
QUEUE_PIECES = 2  # decoded pieces waiting for the extractors
PROGRESS_EVERY_S = 0.5

Progress = Callable[[float, float], None]  # (decoded seconds, clip seconds)


@dataclass
class PassOutcome:
    """What one pass made: a block or an exception per extractor, and what the decoder saw."""

    blocks: dict[str, FeatureBlock] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    damage: Damage = field(default_factory=Damage)
    most_held: dict[str, int] = field(default_factory=dict)  # per extractor: most frames its stream kept between pieces
    piece_frames: dict[VideoSpec, int] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # one-line notices: the decoder's (NVDEC not used, and why), the GPU's
    missing_spans: str = ""  # streams that end early or hold nothing: "audio 6.40-30.00" (see ClipDecoder.missing_spans)
    seconds: Counter = field(default_factory=Counter)  # per stage (pipeline.timing): decoding, waiting, each extractor


def piece_sizes(extractors: list[Extractor], minimum: int = PIECE_FRAMES) -> dict[VideoSpec, int]:
    """Frames per piece for each video request: ``minimum`` rounded up to a multiple of every consumer's batch."""
    sizes: dict[VideoSpec, int] = {}
    for e in extractors:
        if e.modality == "video":
            sizes[e.input] = math.lcm(sizes.get(e.input, 1), e.frames_per_batch)
    return {spec: math.ceil(minimum / n) * n for spec, n in sizes.items()}


def memory_needed(info: ClipInfo, extractors: list[Extractor], minimum: int = PIECE_FRAMES,
                  decoder_threads: int | None = None) -> tuple[int, str]:
    """Bytes of frames a pass over ``info`` holds at most, and the request that needs the most (for messages).

    FFmpeg keeps about one source frame (YUV 4:2:0) per decoding thread plus two; each request holds its
    piece being filled, the queued ones and the one processed, plus what its consumers keep (a window
    model's batch of windows is bounded by the clip's own windows, see ``clip_batch``).
    """
    threads = decoder_threads or local_cores()
    total = int(info.width * info.height * 1.5 * (threads + 2)) if info.has_video else 0
    worst, worst_bytes = "", 0
    for spec, piece in piece_sizes(extractors, minimum).items():
        users = [e for e in extractors if e.modality == "video" and e.input == spec]
        width, height = spec.output_size(info.width, info.height)
        frames = piece * (QUEUE_PIECES + 2) + sum(e.frames_held(piece, info) for e in users)
        nbytes = frames * width * height * 3
        total += nbytes
        if nbytes > worst_bytes:
            worst, worst_bytes = f"{frames} frames of {width}x{height} for {', '.join(e.name for e in users)}", nbytes
    return total, worst


def in_background(pieces: Iterator, depth: int = QUEUE_PIECES) -> Iterator:
    """Run ``pieces`` in a helper thread, at most ``depth`` items ahead; its exceptions surface here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in pieces:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            getattr(pieces, "close", lambda: None)()  # a consumer that stopped early: close the file now

    worker = threading.Thread(target=produce, name="mvfx-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def stream_pass(
    info: ClipInfo,
    extractors: list[Extractor],
    context: dict[str, FeatureBlock],
    minimum: int = PIECE_FRAMES,
    on_progress: Progress | None = None,
    backend: DecoderChoice = CPU_DECODER,
    decoder_threads: int = 0,
    times: Counter | None = None,
) -> PassOutcome:
    """Decode ``info`` once and stream it through ``extractors`` (dependencies first).

    ``backend`` decodes the video on the CPU or with NVDEC (``media.hwdecode.choose_decoder``), with
    ``decoder_threads`` FFmpeg threads (0: one per core); what it could not honour is in ``notices``.

    ``context`` holds finished blocks the extractors depend on (from the store or an earlier pass). An
    extractor that raises is dropped with its exception in ``errors``; the others go on. A ClipError of
    the decoder (nothing decodable) propagates: the whole clip failed. ``times`` gets the seconds per stage
    (``pipeline.timing``) as they pass, so a clip whose decoding fails still counts them; it is the outcome's ``seconds``.
    """
    out = PassOutcome(piece_frames=piece_sizes(extractors, minimum), seconds=times if times is not None else Counter())
    streams = {}
    for e in sorted(extractors, key=lambda e: bool(e.depends_on)):
        try:
            streams[e.name] = (e, e.stream(info, {d: context[d] for d in e.depends_on if d in context}))
        except Exception as exc:
            out.errors[e.name] = exc
    audio = {e.input for e, _ in streams.values() if e.modality == "audio"}
    video = {e.input for e, _ in streams.values() if e.modality == "video"}
    decoder = ClipDecoder(info, audio, video, out.piece_frames, backend=backend, threads=decoder_threads)
    last_report = time.monotonic()
    pieces = in_background(timed_items(decoder.pieces(), out.seconds, DECODING))
    for spec, frames in timed_items(pieces, out.seconds, WAITING):
        if len(frames.images):
            _feed(out, streams, lambda e: e.modality == "video" and e.input == spec, frames)
        if on_progress and time.monotonic() - last_report > PROGRESS_EVERY_S:
            on_progress(decoder.position_s, info.duration_s)
            last_report = time.monotonic()
    for name, (e, _) in list(streams.items()):  # a stream with nothing decodable fails its own extractors only
        if e.modality in decoder.lost:
            out.errors[name] = ClipError("decode", f"{info.path}: {decoder.lost[e.modality]}")
            del streams[name]
    for spec, signal in decoder.audio.items():
        _feed(out, streams, lambda e: e.modality == "audio" and e.input == spec, signal)
    for name, (e, stream) in streams.items():
        try:
            with timing(out.seconds, name), e.serialised():
                out.blocks[name] = stream.finish()
        except Exception as exc:
            out.errors[name] = exc
    out.damage = decoder.damage
    out.missing_spans = decoder.missing_spans()
    out.notices = list(decoder.notices)
    for e in extractors:
        notices, forward_seconds = e.drain_report()
        out.notices += notices
        if forward_seconds:
            out.seconds[forward_stage(e.name)] += forward_seconds
    if on_progress:
        on_progress(info.duration_s, info.duration_s)
    return out


def _feed(out: PassOutcome, streams: dict, wants: Callable[[Extractor], bool], piece) -> None:
    """Give ``piece`` to every live stream that reads it, dependencies first; a failing stream is dropped."""
    made: dict[str, FeatureBlock] = {}
    for name, (e, stream) in list(streams.items()):
        if not wants(e):
            continue
        try:
            with timing(out.seconds, name), e.serialised():
                block = stream.feed(piece, {d: made[d] for d in e.depends_on if d in made})
        except Exception as exc:
            out.errors[name] = exc
            del streams[name]
            continue
        if block is not None:
            made[name] = block
        out.most_held[name] = max(out.most_held.get(name, 0), stream.held)
