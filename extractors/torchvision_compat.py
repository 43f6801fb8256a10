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

    The overlaps are computed in numpy, on the boxes' own float type, for a block of boxes against all later ones at
    once; only the greedy pass over them is a Python loop. MTCNN suppresses thousands of P-Net windows per batch of
    frames: one numpy step per kept box took 21 us, and 0.21 s of MTCNN's 2.6 s on 60 frames."""
    order = scores.argsort(descending=True).cpu().numpy()
    x1, y1, x2, y2 = np.ascontiguousarray(boxes.detach().cpu().numpy()[order].T)
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    suppressed, keep = np.zeros(len(order), bool), []
    rows = max(1, NMS_PAIRS // max(1, len(order)))
    for start in range(0, len(order), rows):
        block, later = slice(start, start + rows), slice(start, None)
        w = np.maximum(np.minimum(x2[block, None], x2[later]) - np.maximum(x1[block, None], x1[later]), 0)
        h = np.maximum(np.minimum(y2[block, None], y2[later]) - np.maximum(y1[block, None], y1[later]), 0)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            overlaps = inter / (areas[block, None] + areas[later] - inter) > iou_threshold
        for k, row in enumerate(overlaps, start):
            if not suppressed[k]:
                keep.append(k)
                suppressed[later] |= row
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
