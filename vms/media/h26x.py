"""H.264 / H.265 NAL unit helpers: Annex-B split, NAL types, keyframes, SPS size.

Only what the demuxer and stream statistics need; nothing here decodes pixels.
"""

from __future__ import annotations

from rtp.h26x import split_annexb  # noqa: F401 - part of this module's API

from .frames import Codec

# H.264 nal_unit_type (ITU-T H.264 Table 7-1)
H264_SLICE = 1
H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
H264_VCL = frozenset(range(1, 6))
H264_AU_PREFIX = frozenset({6, 7, 8, 9, 14, 15, 16, 17, 18})

# H.265 nal_unit_type (ITU-T H.265 Table 7-1)
H265_BLA_W_LP = 16
H265_IDR_W_RADL = 19
H265_IDR_N_LP = 20
H265_CRA = 21
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_AUD = 35
H265_PREFIX_SEI = 39
H265_IRAP = frozenset(range(16, 22))
H265_AU_PREFIX = frozenset({32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)})


def nal_type(codec: Codec, header: int) -> int:
    """nal_unit_type from the first NAL header byte."""
    return header & 0x1F if codec is Codec.h264 else (header >> 1) & 0x3F


def is_vcl(codec: Codec, t: int) -> bool:
    return t in H264_VCL if codec is Codec.h264 else t < 32


def is_keyframe_nal(codec: Codec, t: int) -> bool:
    return t == H264_IDR if codec is Codec.h264 else t in H265_IRAP


def starts_picture(codec: Codec, nal: bytes | bytearray | memoryview, pos: int) -> bool | None:
    """Whether a VCL NAL at ``pos`` is the first slice of a picture (None: need more bytes).

    H.264: first_mb_in_slice == 0 (ue(v) '1' bit); H.265: first_slice_segment_in_pic_flag.
    """
    off = pos + (1 if codec is Codec.h264 else 2)
    if off >= len(nal):
        return None
    return bool(nal[off] & 0x80)


def guess_codec(nal: bytes | bytearray | memoryview, pos: int = 0) -> Codec | None:
    """Decide H.264 vs H.265 from a parameter-set NAL header; None while undecided."""
    if pos + 1 >= len(nal):
        return None
    b0, b1 = nal[pos], nal[pos + 1]
    if b0 & 0x80:
        return None  # forbidden_zero_bit set: not a NAL header
    if b0 in (0x40, 0x42, 0x44) and b1 == 0x01:  # H.265 VPS / SPS / PPS, layer 0, tid 1
        return Codec.h265
    if b0 & 0x1F in (H264_SPS, H264_PPS) and b0 & 0x60:  # nal_ref_idc != 0 for SPS/PPS
        return Codec.h264
    return None


class BitReader:
    """Exp-Golomb reader over an RBSP (emulation prevention bytes already removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS truncated")
        v = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return v

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 → 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def h264_sps_resolution(nal: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an H.264 SPS NAL (header byte included)."""
    r = BitReader(rbsp(nal[1:]))
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = r.ue()
        if chroma == 3:
            r.bit()
        r.ue()
        r.ue()
        r.bit()
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma in (1, 2) else 1
        crop_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return width, height


def h265_sps_resolution(nal: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an H.265 SPS NAL (2-byte header included)."""
    r = BitReader(rbsp(nal[2:]))
    r.bits(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.bits(3)
    r.bit()
    r.bits(96)  # general profile_tier_level + general_level_idc
    flags = [(r.bit(), r.bit()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1:
        r.bits(2 * (8 - max_sub_layers_minus1))
    for profile_present, level_present in flags:
        r.bits(88 * profile_present + 8 * level_present)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma == 3:
        r.bit()
    width, height = r.ue(), r.ue()
    if r.bit():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        width -= (left + right) * sub_w
        height -= (top + bottom) * sub_h
    return width, height


def sps_resolution(codec: Codec, nal: bytes) -> tuple[int, int] | None:
    """Resolution from an SPS, or None when it cannot be parsed (never raises)."""
    try:
        if codec is Codec.h264:
            return h264_sps_resolution(nal)
        return h265_sps_resolution(nal)
    except (ValueError, IndexError):
        return None
