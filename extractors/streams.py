"""How an extractor takes one clip piece by piece: the streaming half of the extractor contract.

The decoder hands each video request's frames on in pieces as it decodes them
(``media.decode.ClipDecoder``). ``Extractor.stream(info, context)`` returns a
``Stream`` that takes those pieces in order (``feed``) and gives the clip's
block at the end (``finish``). ``held`` is how many frames the stream keeps
between pieces; it is bounded by the extractor's own window and batch, never by
the clip's duration (the tests count it). The kinds:

- ``WholeInput``: keeps its input and calls ``extract`` once at the end. Audio
  extractors use it: 16 kHz mono float32 is 3.8 MB a minute.
- ``PerFrame``: runs ``extract`` on every piece. On the CPU pieces are a
  multiple of the extractor's batch (``frames_per_batch``), so the batches,
  and the numbers, are those of the whole clip (in lanes, on a GPU, the first
  piece is smaller: ``pipeline.streaming.FIRST_PIECE_FRAMES``).
- ``Windows``: fixed windows of frames (SlowFast, I3D), batched as on the whole clip.
- ``PickedFrames``: frames chosen by index before decoding starts (per-shot I3D).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mvfx.extractors.base import FeatureBlock
from mvfx.media.decode import Frames, concat_frames
from mvfx.media.probe import ClipInfo

if TYPE_CHECKING:
    from mvfx.extractors.base import Extractor


class Stream(ABC):
    """One extractor's consumer of one clip's pieces."""

    held: int = 0  # frames kept between pieces

    def __init__(self, extractor: Extractor, info: ClipInfo, context: dict[str, FeatureBlock]) -> None:
        self.extractor, self.info, self.context = extractor, info, context

    @abstractmethod
    def feed(self, piece: Frames | np.ndarray, context: dict[str, FeatureBlock]) -> FeatureBlock | None:
        """Take the next piece; ``context`` has the blocks dependencies made from the same piece.

        Returns the rows this piece completed when they belong to its frames (dependents read them), else None.
        """

    @abstractmethod
    def finish(self) -> FeatureBlock:
        """The clip's block, once every piece was fed."""


def concat_blocks(blocks: list[FeatureBlock], dim: int) -> FeatureBlock:
    """Rows of consecutive pieces as one block."""
    if not blocks:
        return FeatureBlock(np.zeros((0, dim), np.float32), np.zeros((0, 2)))
    return FeatureBlock(np.concatenate([b.values for b in blocks]), np.concatenate([b.times for b in blocks]))


def through_stream(extractor: Extractor, data: Frames, info: ClipInfo, context: dict[str, FeatureBlock]) -> FeatureBlock:
    """A whole clip as one piece of the extractor's own stream: ``extract`` for extractors defined by their stream."""
    stream = extractor.stream(info, context)
    stream.feed(data, context)
    return stream.finish()


class WholeInput(Stream):
    """Keeps every piece and runs ``extract`` on all of it at the end."""

    def __init__(self, extractor: Extractor, info: ClipInfo, context: dict[str, FeatureBlock]) -> None:
        super().__init__(extractor, info, context)
        self.pieces: list = []

    def feed(self, piece, context):
        self.pieces.append(piece)
        self.held += len(piece.images) if isinstance(piece, Frames) else 0
        return None

    def finish(self) -> FeatureBlock:
        if not self.pieces:
            raise ValueError(f"{self.extractor.name}: no input was decoded")
        data = concat_frames(self.pieces) if isinstance(self.pieces[0], Frames) else np.concatenate(self.pieces)
        return self.extractor.extract(data, self.info, self.context)


class WholeAudio(Stream):
    """Runs ``extract`` when the audio arrives, so that extractors depending on this one get its block in the same pass.

    The decoder hands on a clip's audio in one piece, its whole signal, once the file is read
    (``pipeline.streaming.stream_pass``); a second piece is refused rather than taken for another clip.
    """

    def __init__(self, extractor: Extractor, info: ClipInfo, context: dict[str, FeatureBlock]) -> None:
        super().__init__(extractor, info, context)
        self.block: FeatureBlock | None = None

    def feed(self, piece: np.ndarray, context: dict[str, FeatureBlock]) -> FeatureBlock:
        if self.block is not None:
            raise ValueError(f"{self.extractor.name}: the audio arrived in more than one piece")
        self.block = self.extractor.extract(piece, self.info, {**self.context, **context})
        return self.block

    def finish(self) -> FeatureBlock:
        if self.block is None:
            raise ValueError(f"{self.extractor.name}: no input was decoded")
        return self.block


class PerFrame(Stream):
    """Rows per frame, made as each piece arrives: nothing is held between pieces."""

    def __init__(self, extractor: Extractor, info: ClipInfo, context: dict[str, FeatureBlock]) -> None:
        super().__init__(extractor, info, context)
        self.blocks: list[FeatureBlock] = []

    def feed(self, piece: Frames, context: dict[str, FeatureBlock]) -> FeatureBlock:
        block = self.extractor.extract(piece, self.info, {**self.context, **context})
        self.blocks.append(FeatureBlock(block.values, block.times))  # side data (face boxes) served this piece only
        return block

    def finish(self) -> FeatureBlock:
        return concat_blocks(self.blocks, self.extractor.dim)


class FrameByFrame:
    """Mixin for extractors whose rows depend on one frame each: they stream with ``PerFrame``.

    Put it first in the bases; ``frames_per_batch`` must be the batch their ``extract`` cuts frames into.
    """

    def stream(self, info: ClipInfo, context: dict[str, FeatureBlock]) -> Stream:
        return PerFrame(self, info, context)


RunClips = Callable[[list[Sequence[np.ndarray]]], np.ndarray]  # clips (each a sequence of frames) -> one row each


class _Batched(Stream):
    """Collects complete clips (lists of frames) and runs them ``batch`` at a time, as the whole-clip path does.

    A clip is a list of the decoded frames themselves (views into the decoder's pieces), not a copy: the extractor
    copies only the frames it picks from it, once, into its batch (a SlowFast window uses 32 of its 64 frames,
    I3D 8)."""

    def __init__(self, extractor: Extractor, info: ClipInfo, context: dict, run: RunClips, batch: int) -> None:
        super().__init__(extractor, info, context)
        self.run, self.batch = run, batch
        self.ready: list[tuple[list[np.ndarray], tuple[float, float]]] = []  # (frames, span) awaiting a batch
        self.rows: list[np.ndarray] = []
        self.spans: list[tuple[float, float]] = []

    def _queue(self, frames: list[np.ndarray] | None, span: tuple[float, float], final: bool = False) -> None:
        if frames is not None:
            self.ready.append((frames, span))
        while self.ready and (len(self.ready) >= self.batch or final):
            batch, self.ready = self.ready[: self.batch], self.ready[self.batch :]
            self.rows.append(self.run([frames for frames, _ in batch]))
            self.spans += [span for _, span in batch]

    def _block(self) -> FeatureBlock:
        self._queue(None, (0.0, 0.0), final=True)
        values = np.concatenate(self.rows) if self.rows else np.zeros((0, self.extractor.dim), np.float32)
        return FeatureBlock(values, np.array(self.spans).reshape(-1, 2))


class Windows(_Batched):
    """Windows of ``window`` frames every ``stride`` frames; a clip shorter than one window gets one window
    over all of it. Holds the frames of the window being filled (and of windows awaiting their batch)."""

    def __init__(self, extractor, info, context, run: RunClips, batch: int, window: int, stride: int) -> None:
        super().__init__(extractor, info, context, run, batch)
        self.window, self.stride = window, stride
        self.images: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.first = 0  # clip index of images[0]
        self.next_start = 0
        self.emitted = False

    def feed(self, piece: Frames, context) -> None:
        self.images += list(piece.images)
        self.times += list(piece.times)
        while self.first + len(self.images) >= self.next_start + self.window:
            a = self.next_start - self.first
            self._queue(self.images[a : a + self.window], (self.times[a][0], self.times[a + self.window - 1][1]))
            self.emitted = True
            self.next_start += self.stride
            drop = min(self.next_start - self.first, len(self.images))
            del self.images[:drop], self.times[:drop]
            self.first += drop
        self.held = len(self.images) + sum(len(frames) for frames, _ in self.ready)
        return None

    def finish(self) -> FeatureBlock:
        if not self.emitted and self.images and self.first == 0:
            self._queue(list(self.images), (self.times[0][0], self.times[-1][1]))
        return self._block()


class PickedFrames(_Batched):
    """Clips made of frames chosen by clip index before decoding: ``plans`` maps each row's span to the frame
    indices it needs for each possible number of decoded frames (the end of a clip is only known at the end).
    Holds only chosen frames, of the rows not yet complete."""

    def __init__(self, extractor, info, context, run: RunClips, batch: int,
                 plans: list[tuple[tuple[float, float], dict[int, np.ndarray]]]) -> None:
        super().__init__(extractor, info, context, run, batch)
        self.plans = plans
        self.kept: dict[int, np.ndarray] = {}
        self.wanted = {int(i) for _, options in plans for idx in options.values() for i in idx}
        self.seen = 0
        self.next_row = 0

    def feed(self, piece: Frames, context) -> None:
        for k, image in enumerate(piece.images, start=self.seen):
            if k in self.wanted:
                self.kept[k] = image
        self.seen += len(piece.images)
        self._emit(final=False)
        self.held = len(self.kept)
        return None

    def _emit(self, final: bool) -> None:
        while self.next_row < len(self.plans):
            span, options = self.plans[self.next_row]
            count = max(options)  # the row's frames end here unless the clip ends first
            if count > self.seen:
                if not final:
                    return
                count = self.seen
            if count not in options:
                raise ValueError(f"{self.extractor.name}: rows reach frame {max(options)} but the clip has {self.seen} frames")
            self._queue([self.kept[int(i)] for i in options[count]], span)
            self.next_row += 1
            first_later = min((int(i) for _, o in self.plans[self.next_row :] for idx in o.values() for i in idx), default=self.seen)
            self.kept = {k: v for k, v in self.kept.items() if k >= first_later}

    def finish(self) -> FeatureBlock:
        self._emit(final=True)
        return self._block()
