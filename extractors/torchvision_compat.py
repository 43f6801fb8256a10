"""Import torchvision on CPU-only torch even when its wheel's compiled operators cannot load.

The torchvision wheel that matches torch 2.13 on PyPI is built against CUDA;
next to the CPU build of torch its ``_C.so`` fails to load, and then
``import torchvision`` stops at ``register_fake("torchvision::nms")`` because
the operator was never defined. When (and only when) that happens, this
module defines the two operators torchvision registers unconditionally,
``nms`` (with a plain torch implementation, used by YOLO post-processing)
and ``qnms`` (schema only), and imports torchvision again. Models,
transforms and ``ops.nms`` then work; ops that need the compiled kernels
(roi_align, deform_conv2d, image decoding) stay unavailable, and mvfx does
not use them. ``torchvision.extension._has_ops`` is pointed at the Python
operators so that ``ops.nms`` accepts them. With a matching torchvision (e.g. on a CUDA machine) nothing
is patched.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

PATCHED = False
NMS_PAIRS = 1 << 20  # box pairs compared at once by nms_reference (4 MB a temporary in float32)


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first (torchvision semantics: a box is
    suppressed by a kept one when their IoU exceeds the threshold; NaN, from two empty boxes, suppresses nothing).

    The overlaps are computed in numpy, on the boxes' own float type, for a block of boxes not yet suppressed against
    all later ones not yet suppressed, at once; only the greedy pass over a block is a Python loop. The block doubles
    while most of its boxes are kept and halves when they are not: MTCNN keeps most of its thousands of P-Net windows
    per batch of frames (one numpy step per kept box took 21 us, 0.21 s of MTCNN's 2.6 s on 60 frames), while on a
    crowded input (YOLO's up to 30,000 boxes) the first few boxes suppress most of the rest."""
    order = scores.argsort(descending=True).cpu().numpy()
    x1, y1, x2, y2 = np.ascontiguousarray(boxes.detach().cpu().numpy()[order].T)
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    suppressed, keep, start, rows = np.zeros(len(order), bool), [], 0, 1
    while start < len(order):
        later = start + np.flatnonzero(~suppressed[start:])
        if not len(later):
            break
        block = later[: min(rows, max(1, NMS_PAIRS // len(later)))]
        w = np.maximum(np.minimum(x2[block, None], x2[later]) - np.maximum(x1[block, None], x1[later]), 0)
        h = np.maximum(np.minimum(y2[block, None], y2[later]) - np.maximum(y1[block, None], y1[later]), 0)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            overlaps = inter / (areas[block, None] + areas[later] - inter) > iou_threshold
        alive, kept = np.ones(len(later), bool), len(keep)  # block is later[: len(block)]
        for i, row in enumerate(overlaps):
            if alive[i]:
                keep.append(later[i])
                alive[row] = False
        suppressed[later[~alive]] = True
        start = block[-1] + 1
        rows = rows * 2 if 2 * (len(keep) - kept) > len(block) else max(1, rows // 2)
    return torch.as_tensor(order[np.array(keep, np.int64)], device=boxes.device)


def _define_operators() -> None:
    global PATCHED
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", nms_reference, "CPU")
    _LIBRARIES.append(library)
    PATCHED = True


_LIBRARIES: list = []


def import_torchvision():
    """``torchvision``, made importable next to a CPU-only torch if its compiled ops cannot load."""
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _define_operators()
        import torchvision

        # ops.nms asks whether the compiled ops loaded; the Python ones stand in now. Ops without a
        # Python version still fail, with "no such operator torchvision::<name>".
        torchvision.extension._has_ops = lambda: True
    return torchvision
