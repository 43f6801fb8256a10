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
consumer's batch (``frames_per_batch``): on the CPU the streamed batches are
then the whole-clip batches and the features are bitwise the same. In lanes
(on a GPU) each request's first piece is ``FIRST_PIECE_FRAMES`` frames, so
the batches after it are cut elsewhere (a GPU's numbers depend on the batch
by rounding only).
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from mvfx.extractors.base import Extractor, FeatureBlock
from mvfx.media.decode import AUDIO_READY, AudioSpec, ClipDecoder, Damage, VideoSpec
from mvfx.media.errors import ClipError
from mvfx.media.hwdecode import CPU_DECODER, DecoderChoice
from mvfx.media.probe import ClipInfo
from mvfx.pipeline.executor import local_cores
from mvfx.pipeline.timing import DECODING, WAITING, forward_stage, timed_items, timing

PIECE_FRAMES = 16  # at least this many frames per piece (more where a batch needs it)
QUEUE_PIECES = 2  # decoded pieces waiting for the extractors
# In lanes (on a GPU), a request's first piece holds at most this many frames, so that a clip's first passes reach the
# device as soon as it starts: with whole pieces, the 2-fps networks' first pass waited for 8 s of video.
FIRST_PIECE_FRAMES = 2
LANE_PIECES = 2  # pieces a lane (see ``Lanes``) may have waiting before the clip's thread waits for it
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
                  decoder_threads: int | None = None, lanes: bool = False) -> tuple[int, str]:
    """Bytes of frames a pass over ``info`` holds at most, and the request that needs the most (for messages).

    FFmpeg keeps about one source frame (YUV 4:2:0) per decoding thread plus two; each request holds its
    piece being filled, the queued ones and the one processed, plus what its consumers keep (a window
    model's batch of windows is bounded by the clip's own windows, see ``clip_batch``), plus, with ``lanes``,
    the pieces a lane may have waiting.
    """
    threads = decoder_threads or local_cores()
    total = int(info.width * info.height * 1.5 * (threads + 2)) if info.has_video else 0
    worst, worst_bytes = "", 0
    for spec, piece in piece_sizes(extractors, minimum).items():
        users = [e for e in extractors if e.modality == "video" and e.input == spec]
        width, height = spec.output_size(info.width, info.height)
        frames = piece * (QUEUE_PIECES + 2 + (LANE_PIECES if lanes else 0)) + sum(e.frames_held(piece, info) for e in users)
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
    lanes: bool = False,
) -> PassOutcome:
    """Decode ``info`` once and stream it through ``extractors`` (dependencies first).

    ``backend`` decodes the video on the CPU or with NVDEC (``media.hwdecode.choose_decoder``), with
    ``decoder_threads`` FFmpeg threads (0: one per core); what it could not honour is in ``notices``.
    ``lanes``: feed the extractors in lanes of their own (``Lanes``; on a GPU), else one after another here.

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
    # In lanes, the audio is decoded first: its extractors (emobase, the log-mel, VGGish) then run while the video
    # decodes, instead of after the clip's last video pass, where the device would wait for them.
    decoder = ClipDecoder(info, audio, video, out.piece_frames, backend=backend, threads=decoder_threads, audio_first=lanes,
                          first_piece=FIRST_PIECE_FRAMES if lanes else None)
    last_report = time.monotonic()
    with Lanes(out, streams, threaded=lanes) as feeding:
        pieces = in_background(timed_items(decoder.pieces(), out.seconds, DECODING))
        for spec, frames in timed_items(pieces, out.seconds, WAITING):
            if spec is AUDIO_READY:
                _feed_audio(feeding, frames)
            elif len(frames.images):
                feeding.feed(lambda e, spec=spec: e.modality == "video" and e.input == spec, frames)
            if on_progress and time.monotonic() - last_report > PROGRESS_EVERY_S:
                on_progress(decoder.position_s, info.duration_s)
                last_report = time.monotonic()
        feeding.drop(lambda e: e.modality in decoder.lost,  # a stream with nothing decodable fails its own extractors only
                     lambda e: ClipError("decode", f"{info.path}: {decoder.lost[e.modality]}"))
        if not decoder.audio_first:
            _feed_audio(feeding, decoder.audio)
        feeding.finish()
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


def _feed_audio(feeding: Lanes, audio: dict[AudioSpec, np.ndarray]) -> None:
    for spec, signal in audio.items():
        feeding.feed(lambda e, spec=spec: e.modality == "audio" and e.input == spec, signal)


class Lanes:
    """How a clip's pieces reach its extractors: in lanes, each fed in order by a thread of its own, or all here.

    On a GPU an extractor waits for the device during its forward passes; fed one after another in the clip's
    thread, every other extractor of the clip (and decoding, once its queue is full) waits with it, and the host
    work of a clip never overlaps its device work. In lanes, each group of extractors linked by dependencies (faces
    and face_expression; the rest alone) takes the pieces in order in its own thread, at most ``LANE_PIECES``
    behind, so one lane's wait for the device leaves the others, and the decoder, running. On the CPU all extractors
    compete for the same cores, so they are fed one after another here, as before (``threaded`` False).
    """

    def __init__(self, out: PassOutcome, streams: dict, threaded: bool) -> None:
        self.out = out
        groups = _dependency_groups(streams) if threaded else [streams]
        self.lanes = [_Lane(group, out, threaded) for group in groups if group]

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, *exc) -> None:
        for lane in self.lanes:
            lane.close()

    def feed(self, wants: Callable[[Extractor], bool], piece) -> None:
        """Give ``piece`` to every stream that ``wants`` it, in each lane's own order."""
        for lane in self.lanes:
            if any(wants(e) for e in lane.extractors):
                lane.run(lambda lane=lane: _feed(self.out, lane.streams, wants, piece, lane.times))

    def drop(self, doomed: Callable[[Extractor], bool], error: Callable[[Extractor], Exception]) -> None:
        """Once every lane has taken what it was given: fail and remove the streams ``doomed`` says."""
        for lane in self.lanes:
            lane.wait()
            for name, (e, _) in list(lane.streams.items()):
                if doomed(e):
                    self.out.errors[name] = error(e)
                    del lane.streams[name]

    def finish(self) -> None:
        """Each stream's block (or its error) into the outcome, every lane finishing at once."""
        for lane in self.lanes:
            lane.run(lambda lane=lane: _finish(self.out, lane.streams, lane.times))
        for lane in self.lanes:
            lane.wait()
            if lane.times is not self.out.seconds:
                self.out.seconds.update(lane.times)


class _Lane:
    """Some of a clip's streams, run in order by a thread of their own (``threaded``) or by the caller."""

    def __init__(self, streams: dict, out: PassOutcome, threaded: bool) -> None:
        self.streams = streams  # the lane's own thread removes a stream that fails (``_feed``)
        self.extractors = [e for e, _ in streams.values()]  # what the clip's thread routes pieces by, never changed
        self.times = Counter() if threaded else out.seconds  # merged into the outcome's when the lane is done
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mvfx-lane") if threaded else None
        self.pending: deque[Future] = deque()

    def run(self, work: Callable[[], None]) -> None:
        if self.pool is None:
            work()
            return
        while len(self.pending) >= LANE_PIECES:  # the lane is behind: wait here, so pieces do not pile up
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(work))

    def wait(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _dependency_groups(streams: dict) -> list[dict]:
    """The streams split into groups that no dependency crosses, each in the streams' own (dependencies first) order."""
    group_of: dict[str, int] = {}
    for name, (e, _) in streams.items():
        linked = {group_of[d] for d in e.depends_on if d in group_of}
        group_of[name] = min(linked, default=len(group_of))
        for other, g in group_of.items():  # a stream that joins two groups merges them
            if g in linked:
                group_of[other] = group_of[name]
    groups: dict[int, dict] = {}
    for name, item in streams.items():
        groups.setdefault(group_of[name], {})[name] = item
    return list(groups.values())


def _feed(out: PassOutcome, streams: dict, wants: Callable[[Extractor], bool], piece, times: Counter) -> None:
    """Give ``piece`` to every live stream that reads it, dependencies first; a failing stream is dropped."""
    made: dict[str, FeatureBlock] = {}
    for name, (e, stream) in list(streams.items()):
        if not wants(e):
            continue
        try:
            with timing(times, name), e.serialised():
                block = stream.feed(piece, {d: made[d] for d in e.depends_on if d in made})
        except Exception as exc:
            out.errors[name] = exc
            del streams[name]
            continue
        if block is not None:
            made[name] = block
        out.most_held[name] = max(out.most_held.get(name, 0), stream.held)


def _finish(out: PassOutcome, streams: dict, times: Counter) -> None:
    for name, (e, stream) in streams.items():
        try:
            with timing(times, name), e.serialised():
                out.blocks[name] = stream.finish()
        except Exception as exc:
            out.errors[name] = exc
