"""Hostile images the tests build themselves: scan bombs, and PNGs of many megapixels that
take little space."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from clipascene_core.io.imageheaders import _MARKER


def scan_bomb(width: int, height: int, repeats: int) -> bytes:
    """A progressive JPEG of width x height whose last scan (a few bytes: the picture is
    flat) is repeated `repeats` more times: each repeat costs a decoder a pass over every
    block of the picture."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    end = _MARKER.search(data, last_scan + 4).start()  # the EOI after its entropy-coded data
    return data[:end] + data[last_scan:end] * repeats + data[end:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def flat_png(width: int, height: int) -> bytes:
    """A complete, valid 8-bit grey PNG of width x height, all zero: hundreds of megapixels
    in well under a megabyte (the rows are compressed one at a time)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def webp_claiming(width: int, height: int) -> bytes:
    """A tiny lossless WebP whose header declares a width x height canvas."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    kept = int.from_bytes(data[21:25], "little") & ~0xFFFFFFF  # alpha hint and version bits
    data[21:25] = ((width - 1) | ((height - 1) << 14) | kept).to_bytes(4, "little")
    return bytes(data)
