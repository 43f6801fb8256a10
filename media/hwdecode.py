"""Which decoder a clip's video goes through: FFmpeg on the CPU or NVDEC on an NVIDIA GPU (``--decode auto|cpu|cuda``).

PyAV's ``hwaccel`` keeps FFmpeg's own decoder for the stream (the one a probe
names, ``ClipInfo.video_codec``) and hands the decoding work to NVDEC through
FFmpeg's "nvdec" hwaccel; the separate ``*_cuvid`` decoders are not involved.
So a codec can use NVDEC when that decoder lists a CUDA hardware config (h264,
hevc, vp8, vp9, mpeg1/2/4, vc1, mjpeg here; not libdav1d, which FFmpeg prefers
for AV1, nor theora or ffv1). Decoded frames stay on the GPU (``is_hw_owned``)
until a sampler picks one: only picked frames cross to system memory, where
``host_frame`` repacks them so that their RGB is CPU decoding's bit for bit.

Whenever NVDEC cannot be used the clip is decoded on the CPU and a one-line
notice says why (for the run summary); ``auto`` on a CPU device is silent.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import av
from av.codec.hwaccel import HWAccel, HWDeviceType

DECODE_CHOICES = ("auto", "cpu", "cuda")

# NVDEC's frames download as nv12 / p010; FFmpeg's CPU decoders give the planar formats. Repacking to them first
# (lossless) makes swscale's RGB that of CPU decoding bit for bit: nv12 straight to rgb24 at source size takes
# another swscale path that differs by up to 47 levels at colour edges. Other formats are converted directly.
CPU_FORMATS = {"nv12": "yuv420p", "p010le": "yuv420p10le"}


class NvdecFailure(Exception):
    """NVDEC itself failed on a clip (not damaged data): the clip is decoded again on the CPU."""


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder for a clip's video: ``cpu`` or ``nvdec`` on CUDA device ``gpu``; ``notice`` says why a request was not met."""

    backend: str = "cpu"
    gpu: int = 0
    notice: str = ""

    @property
    def nvdec(self) -> bool:
        return self.backend == "nvdec"


CPU_DECODER = DecoderChoice()


def gpu_index(device: str) -> int | None:
    """The CUDA device index of a torch device string ("cuda" -> 0, "cuda:1" -> 1), None for a CPU device."""
    if device == "cuda":
        return 0
    if device.startswith("cuda:"):
        return int(device.removeprefix("cuda:"))
    return None


def nvdec_hwaccel(gpu: int) -> HWAccel:
    """PyAV's settings for NVDEC on CUDA device ``gpu``: frames stay on the GPU until picked; a stream NVDEC refuses
    (H.264 High 10, say) is decoded by FFmpeg in software, which ``ClipDecoder`` notices.

    Each opened clip gets a CUDA context of its own (about 0.1 s and 520 MiB of GPU memory on an H200 while the clip
    is open): FFmpeg wants the device's primary context with blocking-sync flags and refuses it (ENOTSUP) once torch
    has made it with the default flags, as it has in a worker whose extractors run on the GPU.
    """
    return HWAccel("cuda", device=str(gpu), allow_software_fallback=True, is_hw_owned=True, options={"primary_ctx": "0"})


def nvdec_codec_error(codec: str) -> str:
    """'' when FFmpeg's decoder ``codec`` (as a probe names it) can use NVDEC in this build, else why not."""
    try:
        configs = av.Codec(codec, "r").hardware_configs
    except ValueError:
        return f"FFmpeg has no {codec} decoder"
    if any(c.device_type == HWDeviceType.cuda and c.is_supported for c in configs):
        return ""
    return f"FFmpeg's {codec} decoder has no NVDEC path in this build"


@functools.cache
def cuda_hwdevice_error(gpu: int) -> str:
    """'' when FFmpeg can open CUDA device ``gpu`` for decoding, else why not; probed once per process (a worker)."""
    try:
        nvdec_hwaccel(gpu).create(av.Codec("h264", "r"))
    except av.FFmpegError as exc:
        return f"FFmpeg cannot open CUDA device {gpu} ({exc.strerror or exc})"
    return ""


def choose_decoder(
    requested: str, device: str, codec: str | None, hwdevice_error: Callable[[int], str] = cuda_hwdevice_error
) -> DecoderChoice:
    """The decoder for a clip whose video ``codec`` (None: no video) feeds extractors on ``device``.

    ``cpu``: the CPU. ``auto``: NVDEC when ``device`` is CUDA and NVDEC can decode the codec, else the CPU, with a
    notice unless the device is the CPU. ``cuda``: NVDEC on ``device``'s GPU (GPU 0 for a CPU device), else the CPU
    with a notice. ``hwdevice_error(gpu)`` says whether a CUDA device can be opened (tests inject it).
    """
    if requested not in DECODE_CHOICES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_CHOICES)}, not {requested!r}")
    gpu = gpu_index(device)
    if requested == "cpu" or not codec or (requested == "auto" and gpu is None):
        return CPU_DECODER
    gpu = 0 if gpu is None else gpu
    reason = nvdec_codec_error(codec) or hwdevice_error(gpu)
    if reason:
        return DecoderChoice(notice=f"NVDEC: {reason}; decoding on the CPU")
    return DecoderChoice("nvdec", gpu)


def host_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` in system memory, in the pixel format CPU decoding gives: a GPU frame is downloaded and repacked."""
    if frame.sw_format is None:
        return frame
    name = frame.sw_format.name
    try:
        return frame.reformat(format=CPU_FORMATS.get(name, name))
    except av.FFmpegError as exc:
        raise NvdecFailure(f"cannot download a frame: {exc.strerror or exc}") from None
