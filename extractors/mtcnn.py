"""MTCNN face detection (Zhang et al. 2016): the P-, R-, O-Net cascade with facenet-pytorch's published weights.

The three networks are laid out as in facenet-pytorch (module names match its
``pnet.pt``, ``rnet.pt``, ``onet.pt`` state dicts, so they load strictly with
``weights_only=True``); the cascade follows the published algorithm with the
settings facenet-pytorch uses, so that boxes agree with its ``MTCNN.detect``
within a pixel (tested):
1. an image pyramid from ``min_face`` (20 px) down by ``factor`` 0.709; each
   level resized with area averaging, scaled to (x - 127.5) / 128; P-Net's
   12 x 12 windows (stride 2) above 0.6 become candidates, suppressed at IoU
   0.5 per level and 0.7 across levels, moved by P-Net's regression and made
   square;
2. each candidate cropped (clipped to the image) and resized to 24 x 24 for
   R-Net: above 0.7 kept, IoU 0.7 suppression, regression, squared;
3. 48 x 48 crops for O-Net: above 0.7 kept, five landmarks (eyes, nose,
   mouth corners), regression, and suppression at 0.7 of the smaller box.
Input: RGB uint8 frames of one size, as a batch. Output per frame: boxes
(x1, y1, x2, y2) in pixels, probabilities, and landmarks [F, 5, 2].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.weight_registry import WeightFile, register_weights

PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
MIN_FACE = 20
# On the CPU each network runs in passes of at most about this many bytes of first-layer activations, counted at the
# input's size: 3 frames of a 640 x 360 frame's largest pyramid level, 162 R-Net or 35 O-Net crops. They then stay in
# the L3 cache; whole batches spilled to memory (one core, 8 frames of 640 x 360: P-Net over the pyramid 244 -> 192 ms;
# 600 R-Net crops 109 -> 63 ms, 120 O-Net crops 113 -> 70 ms). Another batch size can round a row's last bits
# differently (oneDNN picks its kernels by shape); the detections on the tests' images and clips are the same.
CPU_PASS_BYTES = 10 << 20
INT32_PIXELS = (2**31 - 1) // 255  # the largest frame (in pixels) whose integral image of uint8 values fits in int32


def facenet_weights(net: str, sha256: str, approx_kb: float) -> WeightFile:
    """Register one network's weights as the facenet-pytorch 2.6.0 wheel ships them (``facenet_pytorch/data/NET.pt``)."""
    return register_weights(WeightFile(
        name=f"mtcnn_{net}",
        filename=f"mtcnn_{net}.pt",
        url="https://pypi.org/project/facenet-pytorch/2.6.0/",
        sha256=sha256,
        licence="MIT (timesler/facenet-pytorch)",
        approx_mb=approx_kb / 1000,
        source=f"MTCNN {net[0].upper()}-Net (Zhang et al. 2016), the weights facenet-pytorch 2.6.0 ships as "
        f"facenet_pytorch/data/{net}.pt: a plain state dict",
        package_file=f"facenet-pytorch==2.6.0:facenet_pytorch/data/{net}.pt",
    ))


# P-, R- and O-Net's weights, in the order of build_networks
MTCNN_WEIGHTS = (facenet_weights("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28),
                 facenet_weights("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403),
                 facenet_weights("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559))


def _networks():
    import torch
    from torch import nn

    class MaxPool2x2(nn.Module):
        """``nn.MaxPool2d(2, 2, ceil_mode=True)`` as the larger of neighbouring rows, then of neighbouring columns (a
        last lone row or column kept as it is): the same values, in under half the time of torch's CPU pooling on
        P-Net's 10-channel activations (channels-last, one thread: 30 -> 13 ms over a 640 x 360 frame's pyramid,
        8 frames)."""

        def forward(self, x):
            height = x.shape[2]
            rows = torch.maximum(x[:, :, 0 : height - 1 : 2], x[:, :, 1:height:2])
            if height % 2:
                rows = torch.cat([rows, x[:, :, height - 1 :]], dim=2)
            width = rows.shape[3]
            out = torch.maximum(rows[..., 0 : width - 1 : 2], rows[..., 1:width:2])
            return torch.cat([out, rows[..., width - 1 :]], dim=3) if width % 2 else out

    class PNet(nn.Module):
        """Proposal network: fully convolutional, 12 x 12 receptive field, stride 2."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
            self.pool1 = MaxPool2x2()
            self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
            self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)

    class RNet(nn.Module):
        """Refinement network on 24 x 24 crops."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).reshape(len(x), -1)  # the Caffe weights' (W, H, C) order
            x = self.prelu4(self.dense4(x))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    class ONet(nn.Module):
        """Output network on 48 x 48 crops: box, landmarks, face probability."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
            x = self.prelu4(self.conv4(self.pool3(self.prelu3(self.conv3(x)))))
            x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)

    return PNet, RNet, ONet


def build_networks():
    """(P-Net, R-Net, O-Net) modules, untrained."""
    return tuple(cls() for cls in _networks())


@dataclass
class Detections:
    """One frame's faces: boxes [F, 4] (x1, y1, x2, y2), probabilities [F], landmarks [F, 5, 2] (x, y)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def xywh(self) -> np.ndarray:
        """[F, 4] (x, y, w, h) pixel boxes, for the code that shares boxes with the Haar detector."""
        return np.concatenate([self.boxes[:, :2], self.boxes[:, 2:] - self.boxes[:, :2]], axis=1)


def _area_resize(images, size: tuple[int, int]):
    import torch

    return torch.nn.functional.interpolate(images, size=size, mode="area")


def _normalised(pixels):
    """MTCNN's input scaling of pixel values, in place: (x - 127.5) / 128."""
    return pixels.sub_(127.5).mul_(0.0078125)


class _DevicePixels:
    """Pyramid levels and box crops by torch's area interpolation, on the frames' device (a GPU does them there)."""

    def __init__(self, frames: np.ndarray, device: str) -> None:
        import torch

        self.images = torch.as_tensor(np.ascontiguousarray(frames), device=device).permute(0, 3, 1, 2).float()
        self.height, self.width = frames.shape[1:3]

    def level(self, height: int, width: int):
        return _normalised(_area_resize(self.images, (height, width)))

    def crops(self, regions: np.ndarray, image_of: np.ndarray, size: int):
        import torch

        return _normalised(torch.cat([_area_resize(self.images[k, :, y0:y1, x0:x1][None], (size, size))
                                      for k, (y0, x0, y1, x1) in zip(image_of, regions)]))


class _IntegralPixels:
    """The same area interpolation on the host, from one integral image of the frames.

    torch's area mode averages, for output row i of a span of H rows resized to h, the input rows floor(i H / h) to
    ceil((i + 1) H / h), and the same for columns: whole pixels, so four corners of an integral image of the uint8
    frames give each average's sum exactly, and torch's own divisions (by the rows, then the columns, in float32)
    give its values bit for bit (``tests/test_faces.py``). Every pyramid level is then two copies of whole rows and
    two gathers of columns, and every crop four gathers, where torch's pooling costs an adaptive window per output
    pixel and a call per crop: on 60 frames of 640 x 360 (Big Buck Bunny, one thread), 2.4 s for the levels and 1.3 s
    for the crops, most of MTCNN's time on the CPU.
    """

    def __init__(self, frames: np.ndarray) -> None:
        import cv2

        n, h, w, c = frames.shape
        self.height, self.width, self.stride = h, w, w + 1
        exact_in_int32 = h * w <= INT32_PIXELS  # int32 halves the memory read; larger frames sum exactly in float64
        integral = np.empty((n, h + 1, w + 1, c), np.int32 if exact_in_int32 else np.int64)
        for k, frame in enumerate(frames):  # OpenCV's integral: 8 frames of 640 x 360 in 2.5 ms, NumPy's cumsums 27
            integral[k] = cv2.integral(frame, sdepth=cv2.CV_32S if exact_in_int32 else cv2.CV_64F).reshape(h + 1, w + 1, c)
        self.integral = integral  # [N, H + 1, W + 1, 3], a row and a column of zeros first
        self.flat = integral.reshape(-1, c)  # [N (H + 1) (W + 1), 3]

    def level(self, height: int, width: int):
        (r0, r1), (c0, c1) = _spans(0, self.height, height), _spans(0, self.width, width)
        rows = np.take(self.integral, r1, axis=1) - np.take(self.integral, r0, axis=1)  # whole rows: copies, not gathers
        total = np.take(rows, c1, axis=2) - np.take(rows, c0, axis=2)
        return self._pixels(total, (r1 - r0)[None, :, None, None], (c1 - c0)[None, None, :, None])

    def crops(self, regions: np.ndarray, image_of: np.ndarray, size: int):
        (r0, r1), (c0, c1) = (_spans(regions[:, axis, None], regions[:, axis + 2, None], size) for axis in (0, 1))
        base = (image_of * (self.height + 1) * self.stride)[:, None, None]
        total = self._box_sums(lambda r, c: np.take(self.flat, base + r[:, :, None] * self.stride + c[:, None, :], axis=0),
                               r0, r1, c0, c1)
        return self._pixels(total, (r1 - r0)[:, :, None, None], (c1 - c0)[:, None, :, None])

    @staticmethod
    def _box_sums(corner, r0, r1, c0, c1) -> np.ndarray:
        """Sums over rows [r0, r1) x columns [c0, c1), from the integral image's values at the four corners."""
        return corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)

    @staticmethod
    def _pixels(total: np.ndarray, rows: np.ndarray, columns: np.ndarray):
        """[N, h, w, 3] sums over ``rows`` x ``columns`` pixels -> the network's [N, 3, h, w] float32 input
        (channels-last in memory, which the convolutions run faster on). Divided as torch does: its bits."""
        import torch

        means = total.astype(np.float32)
        means /= rows.astype(np.float32)
        means /= columns.astype(np.float32)
        return _normalised(torch.from_numpy(means)).permute(0, 3, 1, 2)


def _spans(start, stop, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The input rows (or columns) each of ``size`` outputs averages when [start, stop) is area-resized to ``size``
    (ints, or [K, 1] arrays for K spans at once: [K, size] then)."""
    n, i = stop - start, np.arange(size)
    return start + (i * n) // size, start - (-(i + 1) * n // size)


def _square(boxes):
    """Grow each (x1, y1, x2, y2) box to a square around its centre (the longer side)."""
    import torch

    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def _regress(boxes, reg):
    """Move box edges by the network's offsets, in units of the box's (inclusive) width and height."""
    import torch

    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = boxes[:, :4] + reg[:, :4] * torch.stack([w, h, w, h], dim=1)
    return boxes


def _crops(pixels: _DevicePixels | _IntegralPixels, boxes, image_of, size: int):
    """Each box cut from its image (clipped to it, 1-based inclusive corners as in the reference) at size x size, and
    which boxes have a crop: one wholly outside its image has none, and the caller drops it (the reference kept it,
    so that its scores no longer lined up with its boxes and the next step failed)."""
    import torch

    corners = boxes[:, :4].trunc().int().cpu().numpy()
    x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
    x2, y2 = np.minimum(corners[:, 2], pixels.width), np.minimum(corners[:, 3], pixels.height)
    inside = (y2 > y1 - 1) & (x2 > x1 - 1)
    regions = np.stack([y1 - 1, x1 - 1, y2, x2], axis=1)[inside]  # (y0, x0, y1, x1), end exclusive
    return pixels.crops(regions, image_of.cpu().numpy()[inside], size), torch.as_tensor(inside, device=boxes.device)


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression by intersection over the smaller box (inclusive pixel areas), highest score first."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = np.argsort(scores), []
    while order.size:
        i, rest = order[-1], order[:-1]
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        keep.append(i)
        order = rest[(w * h) / np.minimum(area[i], area[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def _in_passes(net, inputs, pass_bytes: int | None):
    """``net``'s outputs for [N, 3, h, w] ``inputs``, run in equal passes of whole items holding at most ``pass_bytes``
    of first-layer activations (at least one item a pass; None, or a network without ``conv1``: one pass)."""
    import torch

    n, _, height, width = inputs.shape
    first = getattr(net, "conv1", None)
    if pass_bytes is None or first is None:
        return net(inputs)
    most = max(1, pass_bytes // (first.out_channels * height * width * inputs.element_size()))
    passes = -(-n // most)
    if passes <= 1:  # also no items at all
        return net(inputs)
    step = -(-n // passes)  # spread evenly: no small last pass
    return tuple(torch.cat(parts) for parts in zip(*(net(inputs[i : i + step]) for i in range(0, n, step))))


def detect(nets, frames: np.ndarray, device: str = "cpu", min_face: int = MIN_FACE,
           thresholds: tuple[float, float, float] = THRESHOLDS, factor: float = PYRAMID_FACTOR,
           pass_bytes: int | None = CPU_PASS_BYTES) -> list[Detections]:
    """MTCNN on a batch of RGB uint8 frames [N, H, W, 3] of one size; one ``Detections`` per frame.

    On the CPU the networks run in passes of ``pass_bytes`` (``_in_passes``; None: each stage in one pass, as on a
    GPU, where ``pass_bytes`` is not used)."""
    import torch
    from torchvision.ops import batched_nms

    pnet, rnet, onet = nets
    if len(frames) == 0:
        return []
    on_cpu = torch.device(device).type == "cpu"
    pixels = _IntegralPixels(frames) if on_cpu else _DevicePixels(frames, device)
    pass_bytes = pass_bytes if on_cpu else None
    h, w = frames.shape[1:3]
    scales, scale, side = [], 12.0 / min_face, min(h, w) * 12.0 / min_face
    while side >= 12:
        scales.append(scale)
        scale, side = scale * factor, side * factor

    # Stage 1: P-Net over the pyramid.
    found, image_of = [], []
    for scale in scales:
        reg, probs = _in_passes(pnet, pixels.level(int(h * scale + 1), int(w * scale + 1)), pass_bytes)
        hits = probs[:, 1] >= thresholds[0]
        index = hits.nonzero()
        cells = index[:, 1:].flip(1).float()  # (x, y) of each 12 x 12 window, stride 2
        candidates = torch.cat([((2 * cells + 1) / scale).floor(), ((2 * cells + 12) / scale).floor(),
                                probs[:, 1][hits][:, None], reg.permute(0, 2, 3, 1)[hits]], dim=1)
        keep = batched_nms(candidates[:, :4], candidates[:, 4], index[:, 0], 0.5)
        found.append(candidates[keep])
        image_of.append(index[keep, 0])
    boxes, image_of = torch.cat(found), torch.cat(image_of)
    keep = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7)
    boxes, image_of = boxes[keep], image_of[keep]
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, dim=1)
    boxes = _square(torch.cat([boxes[:, :4] + boxes[:, 5:9] * size, boxes[:, 4:5]], dim=1))

    # Stage 2: R-Net on 24 x 24 crops.
    if len(boxes):
        crops, inside = _crops(pixels, boxes, image_of, 24)
        boxes, image_of = boxes[inside], image_of[inside]
        reg, probs = _in_passes(rnet, crops, pass_bytes)
        passed = probs[:, 1] > thresholds[1]
        boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
        image_of, reg = image_of[passed], reg[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        image_of = image_of[keep]

    # Stage 3: O-Net on 48 x 48 crops, landmarks, and suppression by the smaller box.
    points = torch.zeros((0, 5, 2), device=boxes.device)
    if len(boxes):
        crops, inside = _crops(pixels, boxes, image_of, 48)
        boxes, image_of = boxes[inside], image_of[inside]
        reg, marks, probs = _in_passes(onet, crops, pass_bytes)
        passed = probs[:, 1] > thresholds[2]
        boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
        image_of, reg, marks = image_of[passed], reg[passed], marks[passed]
        bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack([bw[:, None] * marks[:, :5] + boxes[:, 0:1] - 1,
                              bh[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, reg)
        if len(boxes):
            offset = image_of.to(boxes)[:, None] * (boxes[:, :4].max() + 1)  # keeps frames apart in one suppression
            keep = torch.as_tensor(_nms_min((boxes[:, :4] + offset).cpu().numpy(), boxes[:, 4].cpu().numpy(), 0.7))
            boxes, image_of, points = boxes[keep], image_of[keep], points[keep]
    boxes, points, image_of = boxes.cpu().numpy(), points.cpu().numpy(), image_of.cpu().numpy()
    return [Detections(boxes[image_of == i, :4].astype(np.float32), boxes[image_of == i, 4].astype(np.float32),
                       points[image_of == i].astype(np.float32)) for i in range(len(frames))]
