"""The report's pictures, drawn with matplotlib (Agg) as PNG; each function returns the picture's alt text.

Figures are made with ``matplotlib.figure.Figure`` directly (no pyplot state), small and at a modest dpi, so a
report of a hundred clip pages stays quick to draw and light on disk.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

DPI = 80
LINE_DIMS = 8  # feature sets of at most this many dimensions are drawn as lines, larger ones as a heat map
MAX_STEPS = 1500  # time steps drawn; longer time lines are averaged in blocks down to this many
MAX_LEGEND = 8


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


def _blocks(values: np.ndarray, times: np.ndarray, limit: int = MAX_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` rows: consecutive rows averaged in equal blocks (a concert's time line on one picture)."""
    n = len(values)
    if n <= limit:
        return values, times
    k = int(np.ceil(n / limit))
    m = n // k * k
    with np.errstate(all="ignore"):
        head = np.nanmean(values[:m].reshape(-1, k, values.shape[1]), axis=1)
    spans = np.stack([times[:m:k, 0], times[k - 1:m:k, 1]], axis=1)
    if m < n:
        with np.errstate(all="ignore"):
            head = np.vstack([head, np.nanmean(values[m:], axis=0, keepdims=True)])
        spans = np.vstack([spans, [[times[m, 0], times[-1, 1]]]])
    return head, spans


def _span_text(times: np.ndarray) -> str:
    return f"{float(times[0, 0]):.1f} s to {float(times[-1, 1]):.1f} s"


def timeline_png(path: Path, values: np.ndarray, times: np.ndarray, names: list[str] | None, title: str) -> str:
    """One extractor's features of one clip on the clip's time line: lines for a few named dimensions, a heat
    map (each dimension z-scored over the clip) for embeddings and large sets."""
    values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    times = np.asarray(times, dtype=np.float64)
    steps, dim = values.shape
    if steps == 0:
        raise ValueError("no rows to draw")
    values, spans = _blocks(values, times)
    averaged = f" (averaged in {len(values)} blocks)" if len(values) < steps else ""
    names = list(names) if names is not None and len(names) == dim else [f"dim {k}" for k in range(dim)]
    fig = Figure(figsize=(8, 2.4))
    ax = fig.add_axes((0.08, 0.2, 0.72, 0.68))  # fixed margins: tight_layout costs more than drawing
    centres = spans.mean(axis=1)
    if dim <= LINE_DIMS:
        for k in range(dim):
            ax.plot(centres, values[:, k], lw=1.3, marker="o" if len(centres) < 30 else None, ms=3,
                    label=names[k] if k < MAX_LEGEND else None)
        ax.set_ylabel("value")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        alt = (f"{title}: {dim} dimension{'s' * (dim != 1)} ({', '.join(names[:MAX_LEGEND])}) as lines over {steps} "
               f"time steps{averaged}, {_span_text(times)}")
    else:
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0, keepdims=True)
            std = np.nanstd(values, axis=0, keepdims=True)
            z = np.clip(np.where(std > 0, (values - mean) / np.where(std > 0, std, 1), 0.0), -3, 3)
        image = ax.imshow(np.nan_to_num(z.T, nan=0.0), aspect="auto", cmap="viridis", vmin=-3, vmax=3, interpolation="nearest",
                          extent=(float(spans[0, 0]), float(spans[-1, 1]), dim - 0.5, -0.5))
        fig.colorbar(image, cax=fig.add_axes((0.82, 0.2, 0.015, 0.68)), label="z")
        ax.set_ylabel("dimension")
        alt = (f"{title}: heat map of {dim} dimensions (each z-scored over the clip) over {steps} time steps{averaged}, "
               f"{_span_text(times)}")
    if np.isnan(values).any():
        alt += "; some values are NaN (left blank)"
    ax.set_xlim(float(spans[0, 0]), float(spans[-1, 1]))
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9, loc="left")
    _save(fig, path)
    return alt


def thumbnails_png(path: Path, images: list[np.ndarray], instants: list[float], title: str, gap: int = 4) -> str:
    """A strip of decoded frames side by side (one image, so one cheap draw), each labelled with its time."""
    height = max(image.shape[0] for image in images)
    tiles, lefts, x = [], [], 0
    for image in images:
        tile = np.full((height, image.shape[1] + gap, 3), 255, np.uint8)
        tile[: image.shape[0], : image.shape[1]] = image
        tiles.append(tile)
        lefts.append(x + image.shape[1] / 2)
        x += tile.shape[1]
    strip = np.concatenate(tiles, axis=1)[:, :-gap]
    width_in = strip.shape[1] / DPI
    label_in = 0.25
    fig = Figure(figsize=(width_in, height / DPI + label_in))
    ax = fig.add_axes((0, 0, 1, height / DPI / (height / DPI + label_in)))
    ax.imshow(strip, interpolation="nearest")
    ax.set_axis_off()
    for centre, t in zip(lefts, instants):
        fig.text(centre / strip.shape[1], 1 - 0.5 * label_in / (height / DPI + label_in), f"{t:.1f} s", ha="center", va="center", fontsize=8)
    _save(fig, path)
    return f"{title}: {len(images)} frames decoded at " + ", ".join(f"{t:.1f} s" for t in instants)


def waveform_png(path: Path, samples: np.ndarray, sample_rate: int, title: str, columns: int = 1200) -> str:
    """The audio's envelope (min and max per column) over the clip."""
    samples = np.asarray(samples, dtype=np.float32)
    n = len(samples)
    per = max(1, n // columns)
    m = n // per * per
    blocks = samples[:m].reshape(-1, per)
    t = (np.arange(len(blocks)) + 0.5) * per / sample_rate
    fig = Figure(figsize=(8, 1.6))
    ax = fig.add_axes((0.08, 0.28, 0.9, 0.58))
    ax.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), color="tab:blue", lw=0)
    ax.set_xlim(0, n / sample_rate)
    peak = float(np.max(np.abs(samples))) if n else 0.0
    ax.set_ylim(-max(peak, 1e-3) * 1.05, max(peak, 1e-3) * 1.05)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9, loc="left")
    _save(fig, path)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if n else 0.0
    return f"{title}: waveform of {n / sample_rate:.1f} s of audio (mono), peak {peak:.2f}, RMS {rms:.3f}"
