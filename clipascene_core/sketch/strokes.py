"""The stroke set: open cubic Béziers with widths, and their SVG form.

A `StrokeSet` always states its frame by its `width` x `height`: the viewBox its points live in.
Sketches leave the engine in the **input image's pixel frame** (see `frames.CanvasFrame`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lxml import etree
from PIL import Image

from ..io.outputs import atomic_write_png, atomic_write_text

SVG_NS = "http://www.w3.org/2000/svg"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_DATA = re.compile(
    rf"^\s*M\s*({_NUMBER})[\s,]+({_NUMBER})\s*C"
    + rf"\s*({_NUMBER})[\s,]+({_NUMBER})" * 3
    + r"\s*$"
)
#: Decimal places written to SVG: round-trip error at most 5e-5 px.
SVG_DECIMALS = 4


@dataclass
class StrokeSet:
    """N open cubic Bézier strokes in a `width` x `height` pixel frame.

    points: (N, 4, 2) float64 control points, x right, y down.
    widths: (N,) float64 full stroke widths (SVG stroke-width) in the same frame's pixels.
    """

    points: np.ndarray
    widths: np.ndarray
    width: float
    height: float
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 4, 2)
        self.widths = np.broadcast_to(
            np.asarray(self.widths, dtype=np.float64), (len(self.points),)
        ).copy()
        if not self.names:
            self.names = [f"stroke-{index}" for index in range(len(self.points))]

    @property
    def stroke_count(self) -> int:
        """Strokes drawn, counting the pieces of a stroke cut at the object outline once
        (pieces are named "NAME.k", see compose.cut_strokes)."""
        return len({name.split(".")[0] for name in self.names})

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def merged(cls, parts: list[StrokeSet], width: float, height: float) -> StrokeSet:
        """All strokes of `parts` (same frame, `width` x `height`) as one set, in order."""
        if not parts:
            return cls(np.zeros((0, 4, 2)), np.zeros(0), width, height)
        return cls(np.concatenate([part.points for part in parts]),
                   np.concatenate([part.widths for part in parts]), width, height)

    def subset(self, keep: np.ndarray) -> StrokeSet:
        """The strokes where `keep` (N,) is true, in order, with their names."""
        keep = np.asarray(keep, dtype=bool)
        return StrokeSet(
            self.points[keep],
            self.widths[keep],
            self.width,
            self.height,
            [name for name, kept in zip(self.names, keep, strict=True) if kept],
        )

    # --- SVG -------------------------------------------------------------------------------

    def path_elements(self) -> list[etree._Element]:
        """One `<path>` per stroke: `M x y C x y x y x y`, black, round caps and joins."""
        elements = []
        for name, curve, stroke_width in zip(self.names, self.points, self.widths, strict=True):
            path = etree.Element(f"{{{SVG_NS}}}path")
            path.set("id", name)
            path.set("d", path_data(curve))
            path.set("fill", "none")
            path.set("stroke", "#000000")
            path.set("stroke-width", _fmt(stroke_width))
            path.set("stroke-linecap", "round")
            path.set("stroke-linejoin", "round")
            elements.append(path)
        return elements

    def to_svg(self, group_id: str = "strokes") -> str:
        return svg_document(self.width, self.height, [(group_id, self)])

    def write_svg(self, path: str | Path, group_id: str = "strokes") -> None:
        atomic_write_text(path, self.to_svg(group_id))

    # --- raster ----------------------------------------------------------------------------

    def render(self, max_side: int = 1024) -> Image.Image:
        """Rasterise black strokes on white with the project's renderer, longest side <= max_side."""
        from .render import render_strokes

        scale = min(1.0, max_side / max(self.width, self.height))
        out_w = max(1, round(self.width * scale))
        out_h = max(1, round(self.height * scale))
        points = torch.from_numpy(self.points * scale).float()[None]
        widths = torch.from_numpy(self.widths * scale).float()[None]
        with torch.no_grad():
            if len(self):
                paper = render_strokes(points, widths, out_h, out_w)[0]
            else:
                paper = torch.ones(out_h, out_w)
        array = (paper.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(array, mode="L")

    def write_png(self, path: str | Path, max_side: int = 1024) -> None:
        atomic_write_png(path, self.render(max_side))


def _fmt(value: float) -> str:
    text = f"{value:.{SVG_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def path_data(curve: np.ndarray) -> str:
    """SVG path data of one cubic: (4, 2) control points -> 'M x y C x y x y x y'."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    return (
        f"M {_fmt(x0)} {_fmt(y0)} "
        f"C {_fmt(x1)} {_fmt(y1)} {_fmt(x2)} {_fmt(y2)} {_fmt(x3)} {_fmt(y3)}"
    )


def svg_document(width: float, height: float, groups: list[tuple[str, StrokeSet]]) -> str:
    """An SVG with `viewBox="0 0 width height"` and one `<g id=...>` per named stroke set."""
    root = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS})
    root.set("version", "1.1")
    root.set("width", _fmt(width))
    root.set("height", _fmt(height))
    root.set("viewBox", f"0 0 {_fmt(width)} {_fmt(height)}")
    for group_id, strokes in groups:
        group = etree.SubElement(root, f"{{{SVG_NS}}}g")
        group.set("id", group_id)
        for element in strokes.path_elements():
            element.set("id", f"{group_id}-{element.get('id')}")
            group.append(element)
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8").decode()


def _parse(source: str | Path | bytes) -> etree._Element:
    if isinstance(source, bytes):
        return etree.fromstring(source)
    return etree.parse(str(source)).getroot()


def document_size(source: str | Path | bytes) -> tuple[float, float]:
    """(width, height) of an SVG's viewBox."""
    view_box = [float(value) for value in _parse(source).get("viewBox", "0 0 0 0").replace(",", " ").split()]
    return view_box[2], view_box[3]


def read_svg(source: str | Path | bytes) -> dict[str, StrokeSet]:
    """Parse an SVG written by `svg_document` back into stroke sets, keyed by group id.

    Paths outside any group are returned under "strokes". Raises ValueError on path data that
    is not a single 'M x y C x y x y x y' cubic.
    """
    root = _parse(source)
    view_box = [float(value) for value in root.get("viewBox", "0 0 0 0").replace(",", " ").split()]
    width, height = view_box[2], view_box[3]
    collected: dict[str, tuple[list, list, list]] = {}
    for path in root.iter(f"{{{SVG_NS}}}path"):
        parent = path.getparent()
        group_id = parent.get("id") if parent.tag == f"{{{SVG_NS}}}g" else "strokes"
        match = _PATH_DATA.match(path.get("d", ""))
        if match is None:
            raise ValueError(f"path {path.get('id')!r} is not a single cubic Bézier")
        curves, widths, names = collected.setdefault(group_id, ([], [], []))
        curves.append(np.array([float(value) for value in match.groups()]).reshape(4, 2))
        widths.append(float(path.get("stroke-width", "1")))
        name = path.get("id", "")
        names.append(name.removeprefix(f"{group_id}-") or f"stroke-{len(names)}")
    return {
        group_id: StrokeSet(
            np.array(curves).reshape(-1, 4, 2), np.array(widths), width, height, names
        )
        for group_id, (curves, widths, names) in collected.items()
    }

