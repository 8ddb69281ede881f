"""Helpers shared by the extension's tests, which also run under Inkscape's own Python
(stdlib only here): PNGs made by hand, and a backend stand-in for the real effect."""

from __future__ import annotations

import struct
import zlib


def png_bytes(width: int, height: int) -> bytes:
    """A real, decodable grey RGB PNG of width x height pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_from(width: int, height: int, pixel) -> bytes:
    """A real RGB PNG whose pixel (x, y) is `pixel(x, y)` -> (r, g, b)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class RecordingBackend:
    """client.Backend's effect-facing methods; every job's cell is the same real cell SVG."""

    def __init__(self, cell_svg: bytes):
        self.cell = cell_svg
        self.submitted: list[dict] = []
        self.server = "http://127.0.0.1:8765"

    def submit(self, image: bytes, filename: str, params: dict, mask: bytes | None = None) -> dict:
        self.submitted.append({"image": image, "filename": filename, "params": params, "mask": mask})
        return {"id": f"{len(self.submitted):016x}", "status": "queued", "cached": False,
                "eta_s": 600.0 * len(self.submitted), "estimate": "default"}

    def job(self, job_id: str) -> dict:
        """A job the stand-in was sent (its number in the id), finished; any other is refused."""
        number = int(job_id, 16)
        if not 1 <= number <= len(self.submitted):
            from clipascene_ext.client import BackendError

            raise BackendError("the CLIPascene backend refused the request: no job " + job_id)
        return {"id": job_id, "status": "done", "created": float(number),
                "params": self.submitted[number - 1]["params"],
                "progress": {"cells_done": 4, "cells_total": 4}}

    def jobs_of_image(self, image: bytes) -> list[dict]:
        """The jobs sent with these image bytes, newest first (GET /v1/jobs?image_sha256=)."""
        return [self.job(f"{number:016x}") for number in range(len(self.submitted), 0, -1)
                if self.submitted[number - 1]["image"] == image]

    def matrix(self, job_id: str) -> dict:
        return {"status": "done", "rows": 2, "layers": [2, 8], "cells": [
            {"row": row, "column": column, "layer": (2, 8)[column], "ready": True}
            for row in range(2) for column in range(2)]}

    def cell_svg(self, job_id: str, row: int, column: int, part: str = "combined") -> bytes:
        return self.cell
