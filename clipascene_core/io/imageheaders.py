"""What an image's bytes say about the work of decoding it, read before any decoder runs.

Pillow's own `Image.open` is cheap for PNG and JPEG, but not for WebP (its decoder sets up
the whole canvas when the file is opened), and a JPEG's decoding time grows with its number
of scans, which no header states: a progressive JPEG may repeat one small scan thousands of
times, each costing a pass over every block of the picture.
"""

from __future__ import annotations

import re
import struct

#: A marker outside entropy-coded data: 0xFF then anything but a stuffed zero, a restart
#: marker or another fill byte.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: Markers without a length field: TEM, RST0-7, SOI.
_STANDALONE = {0x01, *range(0xD0, 0xD9)}
_EOI, _SOS = 0xD9, 0xDA


def jpeg_scans(data: bytes | memoryview) -> int:
    """How many scans (SOS segments) the first picture of a JPEG holds, counted from its
    markers: the entropy-coded data after each scan header is skipped, as a decoder reads it,
    so a marker-like byte pair inside it is not counted. Stops at the first EOI (an MPO's
    other pictures are never decoded)."""
    scans, at, size = 0, 2, len(data)
    while at + 1 < size:
        found = _MARKER.search(data, at)
        if found is None:
            break
        at = found.start()
        marker = data[at + 1]
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            at += 2
            continue
        if at + 4 > size:
            break
        at += 2 + struct.unpack_from(">H", data, at + 2)[0]
        if marker == _SOS:
            scans += 1  # its entropy-coded data runs to the next marker, found above
    return scans


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file declares (simple lossy, lossless or extended), or None
    when `data` is not a WebP file or its first chunk cannot be read."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind, payload = data[12:16], data[20:]
    if kind == b"VP8X" and len(payload) >= 10:  # extended: the canvas, 24-bit sizes minus one
        return (int.from_bytes(payload[4:7], "little") + 1,
                int.from_bytes(payload[7:10], "little") + 1)
    if kind == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:  # lossless: 14-bit sizes
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":  # lossy
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF
    return None
