"""Decode a clip once and hand every extractor exactly the inputs it declared.

One demux pass reads the audio and video packets together. Damaged packets
are skipped, counted and located (``Damage``), not fatal: a clip fails only
when no usable frame or sample remains. Audio is
resampled by FFmpeg (swresample) to every requested rate at once, downmixed
to mono float32, seconds at a time (``_Audio``). Video frames are picked per request from the same decoded
frames: either on a uniform grid (``fps``) or ``n_frames`` spread uniformly
over the clip ("distributed" sampling, as in the MVED papers), then scaled
with swscale to the requested size (``SCALE_VIA``). A frame is converted to RGB only when
some request picked it and reads it (``WindowReads``), so a 2 fps request costs little beyond decoding.
The video can be decoded by NVDEC instead (``media.hwdecode``): a GPU frame
is downloaded only when picked, and gives the same RGB as CPU decoding.
"""
from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mvfx.media.errors import ClipError
from mvfx.media.hwdecode import CPU_DECODER, DecoderChoice, NvdecFailure, host_frame, nvdec_hwaccel
from mvfx.media.probe import ClipInfo, audio_stream, video_stream

EARLY_END_S = 1.0  # a stream ending this much before the clip's duration is recorded as missing its end


@dataclass(frozen=True)
class AudioSpec:
    """Mono float32 audio at ``sample_rate`` Hz."""

    sample_rate: int


@dataclass(frozen=True)
class WindowReads:
    """The instants of an fps grid a window model reads: offsets ``picks`` of windows of ``window`` instants that
    start every ``stride`` (SlowFast reads 32 of a window's 64 frames, I3D 8).

    The decoder converts only those to RGB; the others are handed on as black frames, so counts and times are those
    of the whole grid. Every instant of the first window is read: a clip shorter than one window is sampled over
    whatever frames it turns out to have.
    """

    window: int
    stride: int
    picks: tuple[int, ...]

    def reads(self, index: int) -> bool:
        """Whether the grid's instant ``index`` (from 0) is read by some window."""
        if index < self.window:
            return True
        first = max(0, -(-(index - self.window + 1) // self.stride))  # the first window that reaches ``index``
        return any(index - k * self.stride in self.picks for k in range(first, index // self.stride + 1))


@dataclass(frozen=True)
class VideoSpec:
    """RGB frames: a uniform grid at ``fps`` or ``n_frames`` spread over the clip.

    Size: ``size=(width, height)`` exactly, or ``short_side`` keeping the aspect
    ratio, or the source size when both are None. ``reads``: only these instants of
    the grid are used (the others arrive black; see ``WindowReads``).
    """

    fps: float | None = None
    n_frames: int | None = None
    short_side: int | None = None
    size: tuple[int, int] | None = None
    reads: WindowReads | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.n_frames is None):
            raise ValueError("VideoSpec needs exactly one of fps or n_frames")
        if self.reads is not None and self.fps is None:
            raise ValueError("VideoSpec: reads applies to an fps grid")

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the frames this spec yields for a source of that size."""
        if self.size is not None:
            return self.size
        if self.short_side is None:
            return width, height
        scale = self.short_side / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class Frames:
    """Sampled frames and the time span each one stands for."""

    images: np.ndarray  # [N, H, W, 3] uint8 RGB
    times: np.ndarray  # [N, 2] float64 start/end seconds


@dataclass
class DecodedClip:
    info: ClipInfo
    audio: dict[AudioSpec, np.ndarray] = field(default_factory=dict)
    video: dict[VideoSpec, Frames] = field(default_factory=dict)
    damage: Damage = field(default_factory=lambda: Damage())
    notices: list[str] = field(default_factory=list)  # one line each time NVDEC was asked for and not used


@dataclass
class Damage:
    """Packets FFmpeg could not decode (an imperfect download, flipped bytes): skipped, counted, located.

    A damaged audio packet is replaced by silence of its duration, so later audio keeps
    its time; a damaged video span shows the last good frame (as a player would).
    """

    packets: int = 0
    spans: list[tuple[float, float]] = field(default_factory=list)  # merged [start, end) seconds, in order
    JOIN_S: ClassVar[float] = 0.05  # spans closer than this are one

    def add(self, start: float, end: float) -> None:
        self.packets += 1
        self._include(start, end)

    def merged(self, other: Damage) -> Damage:
        """Both passes' damage as one (an audio-first clip is demuxed twice, each stream once)."""
        both = Damage(self.packets + other.packets)
        for start, end in self.spans + other.spans:
            both._include(start, end)
        return both

    def _include(self, start: float, end: float) -> None:
        """Add [start, end) to the spans, which stay sorted and apart by more than ``JOIN_S``. Packets come in
        file order, and two streams' packets interleave out of time order: the union must not depend on it."""
        spans = self.spans
        if not spans or start >= spans[-1][0]:  # in time order, the usual case: join the last span or follow it
            if spans and start <= spans[-1][1] + self.JOIN_S:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
            return
        joined: list[tuple[float, float]] = []
        for a, b in sorted([*spans, (start, end)]):
            if joined and a <= joined[-1][1] + self.JOIN_S:
                joined[-1] = (joined[-1][0], max(joined[-1][1], b))
            else:
                joined.append((a, b))
        self.spans = joined

    def describe(self) -> str:
        """'1.41-1.53;2.09-2.30' (seconds), '' when nothing was damaged."""
        return ";".join(f"{a:.2f}-{b:.2f}" for a, b in sorted(self.spans))


def target_times(spec: VideoSpec, duration: float) -> np.ndarray:
    """[N, 2] spans of the frames ``spec`` asks for in a clip of ``duration`` seconds.

    fps grid: span k is [k/fps, (k+1)/fps) clipped to the clip. Distributed:
    the clip is cut into n equal spans and the frame at each span's centre is used.
    """
    if spec.fps is not None:
        starts = np.arange(0.0, duration - 1e-9, 1.0 / spec.fps)
        ends = np.minimum(starts + 1.0 / spec.fps, duration)
    else:
        edges = np.linspace(0.0, duration, spec.n_frames + 1)
        starts, ends = edges[:-1], edges[1:]
    return np.stack([starts, ends], axis=1)


def pick_time(spec: VideoSpec, span: np.ndarray) -> float:
    """The instant whose frame represents a span: its start (fps grid) or centre (distributed)."""
    return float(span[0]) if spec.fps is not None else float(span.mean())


# 8-bit 4:2:0 frames are scaled in YUV and converted to RGB at the requested size: swscale's bilinear scaling straight
# to RGB, the costliest host step of the deep set, costs 1.6 to 3 times as much. At an even width the
# scaled frame is 4:2:2 (0.85-1.0 ms a 720p frame instead of 2.3-2.7 ms): against the frame converted at full size
# and scaled by antialiased bilinear interpolation, the mean difference on Big Buck Bunny is 0.98 levels at 456 x 256
# (straight: 1.23) and 0.80 at 640 x 360 (straight: 1.12), single pixels at sharp colour edges up to 33 levels from
# the straight path. At an odd width it is 4:4:4 (1.85 ms instead of 2.9 ms at 455 x 256; at most 2 levels from the
# straight path, which itself keeps full-width chroma there): a 4:2:2 frame's ceil(w / 2) chroma columns would be
# scaled as if they spanned the whole width, moving colour up to a pixel right. Other formats go straight to RGB.
SCALE_VIA = {"yuv420p": ("yuv422p", "yuv444p"), "yuvj420p": ("yuvj422p", "yuvj444p")}  # (even width, odd width)


class _Scaler:
    """A frame to RGB at one size, by swscale contexts kept for the whole clip (a context made per frame cost 0.6 of
    2.1 ms per 720p frame scaled straight to RGB at 455 x 256 on 2 cores); ``SCALE_VIA`` says how."""

    def __init__(self, width: int, height: int, threads: int) -> None:
        self.width, self.height, self.threads = width, height, threads
        self._scale, self._convert = VideoReformatter(), VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        via = SCALE_VIA.get(frame.format.name)
        if via is not None and (frame.width, frame.height) != (self.width, self.height):
            frame = self._scale.reformat(frame, width=self.width, height=self.height, format=via[self.width % 2],
                                         threads=self.threads)
        return self._convert.reformat(frame, width=self.width, height=self.height, format="rgb24",
                                      threads=self.threads).to_ndarray()


class _RgbFrames:
    """Picked frames in RGB at the requested sizes: one ``_Scaler`` per size, and each frame converted once per size
    however many requests pick it (the 2 fps frames are among the 30 fps ones). Only the newest frame's conversions
    are kept (``keep_only``): a GPU frame held keeps one of NVDEC's decoding surfaces."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads  # swscale's threads (0: FFmpeg's choice), the clip's decoding share
        self._scalers: dict[tuple[int, int], _Scaler] = {}
        self._frame: av.VideoFrame | None = None  # the frame converted last, in system memory as ``_host``
        self._host: av.VideoFrame | None = None
        self._rgb: dict[tuple[int, int], np.ndarray] = {}  # its RGB per size

    def __call__(self, frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        if frame is not self._frame:
            self._frame, self._host, self._rgb = frame, host_frame(frame), {}
        size = (width, height)
        if size not in self._rgb:
            scaler = self._scalers.get(size)
            if scaler is None:
                scaler = self._scalers[size] = _Scaler(width, height, self.threads)
            self._rgb[size] = scaler(self._host)
        return self._rgb[size]

    def keep_only(self, frame: av.VideoFrame | None) -> None:
        """Forget the conversions unless they are ``frame``'s (no sampler will pick an older frame again)."""
        if frame is not self._frame:
            self._frame, self._host, self._rgb = None, None, {}


class _FrameSampler:
    """Chooses, for each requested instant, the last decoded frame shown at or before it.

    Picked frames wait in ``pending`` until the decoder hands them on (``take``), so what a
    sampler holds is bounded by the piece size, not by the clip's duration.
    """

    def __init__(self, spec: VideoSpec, duration: float, width: int, height: int, rgb: _RgbFrames | None = None) -> None:
        self.spec = spec
        self.spans = target_times(spec, duration)
        self.instants = [pick_time(spec, s) for s in self.spans]
        self.width, self.height = spec.output_size(width, height)
        self.rgb = rgb if rgb is not None else _RgbFrames()
        self.unread = np.zeros((self.height, self.width, 3), np.uint8)  # what stands for an instant nothing reads
        self.pending: list[np.ndarray] = []
        self.taken = 0  # instants filled so far, pending included
        self._prev: av.VideoFrame | None = None

    def offer(self, frame: av.VideoFrame, t: float) -> None:
        while self.taken < len(self.instants) and self.instants[self.taken] < t - 1e-6:
            self._take(self._prev if self._prev is not None else frame)
        self._prev = frame

    def restart(self) -> None:
        """Forget the last frame seen: decoding starts again from the clip's start (taken instants stay taken)."""
        self._prev = None

    def spread_over(self, video_s: float) -> None:
        """N frames spread over the clip: spread them over the video stream's own ``video_s`` seconds instead, when
        the video ends before the clip (real 30 s containers whose video stops at 29.5 s gave 15 of 16 frames)."""
        if self.spec.n_frames is not None and self.taken == 0 and 0 < video_s < self.spans[-1, 1]:
            self.spans = target_times(self.spec, video_s)
            self.instants = [pick_time(self.spec, s) for s in self.spans]

    def fill_to(self, decoded_end: float) -> None:
        """Fill the instants up to where decoding actually ended (a truncated file yields fewer on an fps grid);
        N frames spread over the clip are always N: the last frame stands for instants past the end."""
        end = np.inf if self.spec.n_frames is not None else decoded_end
        while self._prev is not None and self.taken < len(self.instants) and self.instants[self.taken] < end:
            self._take(self._prev)

    def take(self, limit: float = np.inf) -> Frames:
        """Up to ``limit`` of the frames picked and not yet handed on, with their spans."""
        n = int(min(limit, len(self.pending)))
        first = self.taken - len(self.pending)
        images = np.stack(self.pending[:n]) if n else np.zeros((0, self.height, self.width, 3), np.uint8)
        self.pending = self.pending[n:]
        return Frames(images=images, times=self.spans[first : first + n].copy())

    def _take(self, frame: av.VideoFrame) -> None:
        reads = self.spec.reads
        if reads is None or reads.reads(self.taken):
            self.pending.append(self.rgb(frame, self.width, self.height))  # a frame picked again: the same array
        else:
            self.pending.append(self.unread)
        self.taken += 1


class _Samples:
    """Mono float32 samples appended as they are decoded, into one buffer sized from the probed duration
    (no list of small arrays to join at the end, which would hold the signal twice)."""

    def __init__(self, expected: int) -> None:
        self.buffer = np.empty(max(expected, 4096), np.float32)
        self.n = 0

    def extend(self, arrays) -> None:
        for array in arrays:
            if self.n + len(array) > len(self.buffer):  # longer than probed: grow by half
                grown = np.empty(max(self.n + len(array), len(self.buffer) * 3 // 2), np.float32)
                grown[: self.n] = self.buffer[: self.n]
                self.buffer = grown
            self.buffer[self.n : self.n + len(array)] = array
            self.n += len(array)

    def array(self) -> np.ndarray:
        return self.buffer[: self.n]


class _Audio:
    """The clip's audio at every requested rate, mono float32 (swresample), from decoded frames in order.

    Frames wait in a FIFO and are resampled ``BLOCK_S`` seconds at a time: per 1024-sample AAC frame, a resampling
    call and its array cost 60 us, three times the decoding (2.1 s of CPU for 10 minutes of audio, now 0.8 s), and
    swresample gives the same samples however its input is cut. Damage becomes silence of its length, where it was
    (``silence``, recorded in ``damage``): a packet that does not decode, a frame whose format, layout or rate differs
    from the first frame's (decoded from damaged data; the FIFO itself would not notice a new channel count), and a
    block that swresample refuses.
    """

    BLOCK_S = 4.0

    def __init__(self, specs: frozenset[AudioSpec], duration_s: float, damage: Damage, v_start: float) -> None:
        self.resamplers = {s: av.AudioResampler(format="flt", layout="mono", rate=s.sample_rate) for s in specs}
        self.chunks = {s: _Samples(int((duration_s + 1.0) * s.sample_rate)) for s in specs}
        self.damage, self.v_start = damage, v_start
        self.fifo: av.AudioFifo | None = None
        self.kind: tuple[str, str, int] | None = None  # (format, layout, rate) of the first frame; others are damage
        self.block = 0  # samples per resampling call, at the source's rate
        self.block_start = 0.0  # clip time of the first sample waiting in the FIFO

    def add(self, frame: av.AudioFrame) -> None:
        start = float(frame.time) - self.v_start if frame.time is not None else None
        if not frame.sample_rate:
            self._lost(0.0, start)
            return
        kind = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self.kind is None:
            self.kind, self.fifo = kind, av.AudioFifo()
            self.block = max(1, round(self.BLOCK_S * frame.sample_rate))
        if kind != self.kind:
            self._lost(frame.samples / frame.sample_rate, start)
            return
        if not self.fifo.samples:
            self.block_start = start if start is not None else self.block_start
        frame.pts = None  # the FIFO would insist on continuous timestamps; damaged packets leave gaps
        self.fifo.write(frame)
        if self.fifo.samples >= self.block:
            self._flush()

    def silence(self, seconds: float) -> None:
        """Silence in place of lost audio, after what was decoded before it (later audio keeps its time)."""
        self._flush()
        for spec in self.resamplers:
            self.chunks[spec].extend([np.zeros(round(seconds * spec.sample_rate), np.float32)])

    def finish(self) -> dict[AudioSpec, np.ndarray]:
        self._flush()
        for spec, resampler in self.resamplers.items():
            self.chunks[spec].extend(f.to_ndarray()[0] for f in resampler.resample(None))
        return {spec: chunks.array() for spec, chunks in self.chunks.items()}

    def _lost(self, seconds: float, start: float | None) -> None:
        at = max(0.0, start) if start is not None else 0.0
        self.damage.add(at, at + seconds)
        self.silence(seconds)

    def _flush(self) -> None:
        if self.fifo is None or not self.fifo.samples:
            return
        block = self.fifo.read()
        try:
            converted = {spec: [f.to_ndarray()[0] for f in r.resample(block)] for spec, r in self.resamplers.items()}
        except ValueError:  # swresample refused the block (av.ArgumentError among them)
            self._lost(block.samples / block.sample_rate, self.block_start)
            return
        for spec, arrays in converted.items():
            self.chunks[spec].extend(arrays)
        self.block_start += block.samples / block.sample_rate


def _packet_span(packet: av.Packet, v_start: float) -> tuple[float, float]:
    """[start, end) seconds of a packet on the clip's time line (0 when its timestamps are unknown)."""
    if packet.pts is None or packet.time_base is None:
        return 0.0, 0.0
    start = float(packet.pts * packet.time_base) - v_start
    return max(0.0, start), max(0.0, start + float((packet.duration or 0) * packet.time_base))


AUDIO_READY = "audio ready"  # what ``pieces`` yields, with the audio, once it is complete (``audio_first``)


class ClipDecoder:
    """One demux pass over a clip that hands frames on in pieces as they are decoded.

    ``pieces()`` yields ``(spec, Frames)`` whenever a video request has ``piece_frames[spec]``
    new frames (a request missing from the mapping gets all its frames at the end), then one
    last, possibly empty, piece per request. No piece holds more than its size, even where one
    decoded frame fills several instants. With ``first_piece`` (lanes, on a GPU), each request's
    first piece holds at most that many frames, so that its first passes need not wait for a whole
    piece; the whole pieces after it then start at another frame than a consumer's batches would.
    Audio is kept whole (16 kHz mono float32 is 3.8 MB a minute) and is in ``audio`` once the
    pieces are exhausted, with ``damage``.
    ``position_s`` is how far decoding has got, for progress displays.

    ``backend`` (``media.hwdecode.choose_decoder``) picks FFmpeg on the CPU or NVDEC for the video.
    When NVDEC fails on the clip (not on damaged data) the clip is decoded again on the CPU: the
    samplers go on from the instants already handed on, audio and damage are counted afresh.
    ``notices`` holds one line per time NVDEC was asked for and not used (for the run summary).
    ``threads``: FFmpeg's decoding threads (the worker's share of the cores, see ``pipeline.threads``).
    ``audio_first`` (a clip with both streams asked for): demux the audio alone first, and yield
    ``(AUDIO_READY, audio)`` when it holds something usable, before any video piece, so that the audio's
    extractors can run while the video decodes; then the video alone. The results are the same as one pass's.
    """

    def __init__(
        self,
        info: ClipInfo,
        audio_specs: set[AudioSpec] | frozenset[AudioSpec] = frozenset(),
        video_specs: set[VideoSpec] | frozenset[VideoSpec] = frozenset(),
        piece_frames: Mapping[VideoSpec, int] | None = None,
        backend: DecoderChoice = CPU_DECODER,
        threads: int = 0,
        audio_first: bool = False,
        first_piece: int | None = None,
    ) -> None:
        self.info = info
        self.first_piece = first_piece  # at most this many frames in each request's first piece (None: a whole piece)
        self.threads = threads  # FFmpeg's decoding threads; 0: FFmpeg's choice (one per core)
        self.audio_specs = frozenset(audio_specs) if info.has_audio else frozenset()
        self.video_specs = frozenset(video_specs) if info.has_video else frozenset()
        self.piece_frames = dict(piece_frames or {})
        self.backend = backend
        self.notices: list[str] = [backend.notice] if backend.notice else []
        self.audio: dict[AudioSpec, np.ndarray] = {}
        self.audio_frames = 0
        self.lost: dict[str, str] = {}  # "audio" | "video" -> why nothing of it could be decoded
        self.ends: dict[str, float] = {}  # "audio" | "video" -> where its decoded content ends (seconds)
        self.damage = Damage()
        self.position_s = 0.0
        self.audio_first = audio_first and bool(self.audio_specs) and bool(self.video_specs)

    def pieces(self) -> Iterator[tuple[VideoSpec, Frames] | tuple[str, dict[AudioSpec, np.ndarray]]]:
        info = self.info
        if not (self.audio_specs or self.video_specs):
            return
        rgb = _RgbFrames(self.threads)
        samplers = [_FrameSampler(s, info.duration_s, info.width, info.height, rgb) for s in self.video_specs]
        with_audio = not self.audio_first
        if self.audio_first:
            yield from self._demux([], rgb, nvdec=False, with_audio=True)  # yields nothing: no samplers
            heard, heard_frames, heard_damage = self.audio, self.audio_frames, self.damage
            if not self._audio_dead():
                yield AUDIO_READY, heard  # the dict itself: ``audio`` is reset as the video pass starts
        try:
            n_video = yield from self._demux(samplers, rgb, nvdec=self.backend.nvdec and bool(samplers), with_audio=with_audio)
        except NvdecFailure as failure:
            self.notices.append(f"NVDEC failed on {info.path} ({failure}); decoded it again on the CPU")
            for sampler in samplers:
                sampler.restart()
            rgb.keep_only(None)
            n_video = yield from self._demux(samplers, rgb, nvdec=False, with_audio=with_audio)
        if self.audio_first:
            self.audio, self.audio_frames, self.damage = heard, heard_frames, heard_damage.merged(self.damage)
        self._account_for_lost_streams(n_video, bool(samplers))
        for sampler in samplers:
            while len(sampler.pending) > (piece := self._piece(sampler)):
                yield sampler.spec, sampler.take(piece)
            yield sampler.spec, sampler.take()

    def _piece(self, sampler: _FrameSampler) -> float:
        """Frames in ``sampler``'s next piece: its request's ``piece_frames``, or at most ``first_piece`` while it
        has handed nothing on."""
        piece = self.piece_frames.get(sampler.spec, np.inf)
        if self.first_piece and sampler.taken == len(sampler.pending):
            return min(piece, self.first_piece)
        return piece

    def _account_for_lost_streams(self, n_video: int, video_asked: bool) -> None:
        """A stream with nothing decodable is ``lost`` (its extractors fail, the other stream's go on); the clip
        fails only when nothing usable is left. A stream ending over ``EARLY_END_S`` before the clip is in ``ends``."""
        info = self.info
        damaged = f" ({self.damage.packets} damaged packets)" if self.damage.packets else ""
        video_dead = video_asked and n_video == 0
        audio_dead = bool(self.audio_specs) and self._audio_dead()
        if video_dead and (audio_dead or not self.audio_specs):
            raise ClipError("decode", f"{info.path}: video stream holds no decodable frame{damaged}")
        if audio_dead and not video_asked:
            raise ClipError("decode", f"{info.path}: audio stream holds no decodable sample{damaged}")
        if video_dead:
            self.lost["video"] = f"video stream holds no decodable frame{damaged}; the audio was used"
        if audio_dead:
            self.lost["audio"] = f"audio stream holds no decodable sample{damaged}; the video was used"
            self.audio = {}
        if video_asked:
            self.ends["video"] = 0.0 if video_dead else self.position_s
        if self.audio_specs:
            spec = next(iter(self.audio_specs))
            self.ends["audio"] = len(self.audio.get(spec, ())) / spec.sample_rate

    def _audio_dead(self) -> bool:
        return self.audio_frames == 0 or all(len(x) == 0 for x in self.audio.values())

    def missing_spans(self) -> str:
        """'audio 6.40-30.00' for each decoded stream that ends more than ``EARLY_END_S`` before the clip; '' if none."""
        end = self.info.duration_s
        return ";".join(f"{kind} {at:.2f}-{end:.2f}" for kind, at in sorted(self.ends.items()) if end - at > EARLY_END_S)

    def _demux(self, samplers: list[_FrameSampler], rgb: _RgbFrames, nvdec: bool,
               with_audio: bool = True) -> Generator[tuple[VideoSpec, Frames], None, int]:
        """One pass over the file (video on NVDEC when ``nvdec``) filling ``audio`` (``with_audio``), ``damage`` and
        the samplers (their frames converted by ``rgb``), yielding full pieces; returns the number of video frames
        decoded. Raises NvdecFailure when NVDEC fails."""
        info = self.info
        self.damage, self.position_s, self.audio, self.audio_frames = Damage(), 0.0, {}, 0
        container = self._open(nvdec)
        with container:
            v = video_stream(container) if samplers else None
            a = audio_stream(container) if self.audio_specs and with_audio else None
            if v is not None:
                v.thread_type = "AUTO"
                v.thread_count = self.threads
            origin = video_stream(container) if self.audio_first else v  # the clip's time line starts with its video
            v_start = float(origin.start_time * origin.time_base) if origin is not None and origin.start_time else 0.0
            if v is not None and v.duration is not None:
                for sampler in samplers:
                    sampler.spread_over(float(v.duration * v.time_base))
            audio = _Audio(self.audio_specs if a else frozenset(), info.duration_s, self.damage, v_start)
            frame_period = 1.0 / info.fps if info.fps else 0.0
            n_video = 0  # audio_frames: decoded, not silence put in for damaged packets
            packets = container.demux([s for s in (v, a) if s is not None])
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.FFmpegError, IndexError):  # the container is damaged from here on: keep what was decoded
                    # (IndexError: PyAV's own demuxer, on a packet of a stream that a damaged MPEG-TS made up mid-file)
                    if samplers or not self.audio_first:  # recorded once, where the video stops (the video pass meets it too)
                        self.damage.add(self.position_s, info.duration_s)
                    break
                frames = self._decode(packet, nvdec)
                if frames is None:
                    start, end = _packet_span(packet, v_start)
                    self.damage.add(start, end)
                    if packet.stream is a:
                        audio.silence(end - start)
                    continue
                for frame in frames:
                    if isinstance(frame, av.AudioFrame):
                        self.audio_frames += 1
                        audio.add(frame)
                        continue
                    if nvdec and n_video == 0 and frame.sw_format is None:  # FFmpeg's own fallback: software decoding
                        self.notices.append(f"NVDEC refused {info.path} ({info.video_codec}, {info.width}x{info.height}); decoded on the CPU")
                    t = float(frame.time) - v_start if frame.time is not None else n_video * frame_period
                    n_video += 1
                    self.position_s = max(self.position_s, t + frame_period)
                    for sampler in samplers:
                        sampler.offer(frame, t)
                        # A piece takes no more than its size: one decoded frame can fill several instants (a
                        # still image's video, a 2-fps source asked for at 8 fps), and a piece held them all.
                        while len(sampler.pending) >= (piece := self._piece(sampler)):
                            yield sampler.spec, sampler.take(piece)
                    rgb.keep_only(frame)  # every sampler has moved on to ``frame``
            self.audio = audio.finish()
        if nvdec and n_video == 0:
            raise NvdecFailure("no frame decoded")
        for sampler in samplers:  # here, so that a GPU frame failing to download is NVDEC's failure too
            sampler.fill_to(min(self.position_s, info.duration_s))
        return n_video

    def _open(self, nvdec: bool) -> av.container.InputContainer:
        """The clip opened for decoding; a failure to open it with NVDEC is NVDEC's."""
        try:
            return av.open(self.info.path, hwaccel=nvdec_hwaccel(self.backend.gpu) if nvdec else None)
        except av.FFmpegError as exc:
            if nvdec:
                raise NvdecFailure(f"cannot open it: {exc.strerror or exc}") from None
            raise ClipError("decode", f"{self.info.path}: cannot open ({exc.strerror or exc})") from None

    @staticmethod
    def _decode(packet: av.Packet, nvdec: bool) -> list[av.Frame] | None:
        """The packet's frames, None when its data is damaged. Any other error of NVDEC is NVDEC's: NvdecFailure."""
        try:
            return packet.decode()
        except av.InvalidDataError:
            return None
        except av.FFmpegError as exc:
            if nvdec and packet.stream.type == "video":
                raise NvdecFailure(exc.strerror or str(exc)) from None
            return None


def concat_frames(pieces: list[Frames]) -> Frames:
    """One Frames from consecutive pieces of the same request."""
    return Frames(np.concatenate([p.images for p in pieces]), np.concatenate([p.times for p in pieces]))


def decode(
    info: ClipInfo,
    audio_specs: set[AudioSpec] | frozenset[AudioSpec] = frozenset(),
    video_specs: set[VideoSpec] | frozenset[VideoSpec] = frozenset(),
    backend: DecoderChoice = CPU_DECODER,
) -> DecodedClip:
    """Decode ``info.path`` whole, producing every requested audio rate and frame set (tests, small clips)."""
    decoder = ClipDecoder(info, audio_specs, video_specs, backend=backend)
    pieces: dict[VideoSpec, list[Frames]] = {}
    for spec, frames in decoder.pieces():
        pieces.setdefault(spec, []).append(frames)
    video = {spec: concat_frames(parts) for spec, parts in pieces.items()}
    return DecodedClip(info=info, audio=decoder.audio, video=video, damage=decoder.damage, notices=decoder.notices)
