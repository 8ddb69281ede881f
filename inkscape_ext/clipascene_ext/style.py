"""How imported strokes look: colour (one colour, or sampled from the photo along each stroke),
width scale, opacity, and tapered ends that stay editable in Inkscape.

A `StrokeStyle` is what the user chose in the dialog. It is written on the imported layer
(`data-clipascene-style`) so that Change Abstraction styles the new strokes the same way.
Geometry works on the cell's own frame (bitmap px), where the photo's pixels are too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import inkex

PHOTO = "photo"
#: Fraction of a stroke's length (in curve time) over which a tapered end narrows to a point.
TAPER_LENGTH = 0.2
#: Points per cubic segment when sampling colours or drawing a tapered outline.
SAMPLES = 24
_HEX = re.compile(r"^#[0-9a-f]{6}$")


@dataclass(frozen=True)
class StrokeStyle:
    """color: '#rrggbb', or PHOTO for the photo's mean colour under each stroke.
    width_scale multiplies the cell's stroke widths; opacity is 0..1; taper: pointed ends
    (a filled outline carrying Inkscape's Taper Stroke path effect)."""

    color: str = "#000000"
    width_scale: float = 1.0
    opacity: float = 1.0
    taper: bool = False

    def __post_init__(self) -> None:
        color = str(self.color).strip().lower()
        if color != PHOTO and not _HEX.match(color):
            raise inkex.AbortExtension(f"the stroke colour must be #rrggbb or 'photo', not {self.color!r}.")
        object.__setattr__(self, "color", color)
        for name, low, high in (("width_scale", 0.01, 100.0), ("opacity", 0.0, 1.0)):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and low <= value <= high):
                raise inkex.AbortExtension(f"{name.replace('_', ' ')} must be between {low:g} and "
                                           f"{high:g}, not {value!r}.")
            object.__setattr__(self, name, value)

    def encode(self) -> str:
        """The style as the layer's `data-clipascene-style` attribute."""
        return (f"color={self.color};width={self.width_scale:g};opacity={self.opacity:g};"
                f"taper={int(self.taper)}")

    @classmethod
    def decode(cls, text: str | None) -> StrokeStyle:
        """The inverse of `encode`; missing or unreadable fields keep their defaults."""
        fields = dict(item.split("=", 1) for item in (text or "").split(";") if "=" in item)
        values = {}
        try:
            if "color" in fields:
                values["color"] = fields["color"]
            if "width" in fields:
                values["width_scale"] = float(fields["width"])
            if "opacity" in fields:
                values["opacity"] = float(fields["opacity"])
            if "taper" in fields:
                values["taper"] = fields["taper"].strip() == "1"
            return cls(**values)
        except (ValueError, inkex.AbortExtension):
            return cls()


def option_color(value) -> str:
    """An Inkscape colour parameter (an RGBA integer, or text) as '#rrggbb'."""
    try:
        return "#{:02x}{:02x}{:02x}".format(*inkex.Color(value).to_rgb())
    except (ValueError, TypeError, inkex.colors.ColorError):
        raise inkex.AbortExtension(f"{value!r} is not a colour.") from None


# --- geometry of one stroke ----------------------------------------------------------------------

def subpath_segments(d: str) -> list[list[tuple[tuple[float, float], ...]]]:
    """The cubic segments (p0, p1, p2, p3) of each subpath of path data (lines become cubics)."""
    return [[(tuple(before[1]), tuple(before[2]), tuple(after[0]), tuple(after[1]))
             for before, after in zip(subpath, subpath[1:], strict=False)]
            for subpath in inkex.Path(d).to_superpath()]


def cubic_segments(d: str) -> list[tuple[tuple[float, float], ...]]:
    """The cubic segments of path data, all subpaths in order."""
    return [segment for subpath in subpath_segments(d) for segment in subpath]


def cubic_point(segment, t: float) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = segment
    u = 1.0 - t
    a, b, c, e = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
    return a * x0 + b * x1 + c * x2 + e * x3, a * y0 + b * y1 + c * y2 + e * y3


def _tangent(segment, t: float) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = segment
    u = 1.0 - t
    return (3 * u * u * (x1 - x0) + 6 * u * t * (x2 - x1) + 3 * t * t * (x3 - x2),
            3 * u * u * (y1 - y0) + 6 * u * t * (y2 - y1) + 3 * t * t * (y3 - y2))


def sample_points(d: str, per_segment: int = SAMPLES) -> list[tuple[float, float]]:
    """Points evenly spaced in curve time along the path, both ends included."""
    points = []
    for segment in cubic_segments(d):
        start = 0 if not points else 1
        points += [cubic_point(segment, step / per_segment) for step in range(start, per_segment + 1)]
    return points


def taper_outline(d: str, width: float, per_segment: int = SAMPLES) -> str:
    """A closed outline of the stroke `d` drawn `width` wide, narrowing to points at both ends
    over TAPER_LENGTH of its curve time: what Inkscape's Taper Stroke effect draws."""
    segments = cubic_segments(d)
    if not segments:
        return d
    total = len(segments)
    left, right = [], []
    previous_normal = (0.0, -1.0)
    for index, segment in enumerate(segments):
        for step in range(0 if index == 0 else 1, per_segment + 1):
            t = step / per_segment
            time = (index + t) / total  # 0..1 along the whole stroke
            x, y = cubic_point(segment, t)
            dx, dy = _tangent(segment, t)
            length = math.hypot(dx, dy)
            normal = (-dy / length, dx / length) if length > 1e-12 else previous_normal
            previous_normal = normal
            ends = min(time, 1.0 - time) / TAPER_LENGTH
            half = 0.5 * width * (math.sin(0.5 * math.pi * ends) if ends < 1 else 1.0)
            left.append((x + normal[0] * half, y + normal[1] * half))
            right.append((x - normal[0] * half, y - normal[1] * half))
    outline = left + right[::-1]
    return "M " + " L ".join(f"{x:.4f} {y:.4f}" for x, y in outline) + " Z"


# --- the photo's colours -------------------------------------------------------------------------

def mean_color(pixels, points) -> str:
    """'#rrggbb': the mean colour of `pixels` (photo.Pixels) at `points` (bitmap px), each
    clamped into the bitmap."""
    if not points:
        return "#000000"
    totals = [0.0, 0.0, 0.0]
    for x, y in points:
        red, green, blue = pixels.rgb(x, y)
        totals[0] += red
        totals[1] += green
        totals[2] += blue
    return "#" + "".join(f"{round(total / len(points)):02x}" for total in totals)


# --- applying it ---------------------------------------------------------------------------------

def styled_stroke(d: str, width: float, style: StrokeStyle, pixels=None) -> dict:
    """The attributes of one imported stroke (`d` and `width` from the cell) drawn as `style`
    says. `pixels` (photo.Pixels) is needed when the colour comes from the photo."""
    color = style.color
    if color == PHOTO:
        if pixels is None:
            raise inkex.AbortExtension("colours sampled from the photo need the photo's pixels.")
        color = mean_color(pixels, sample_points(d))
    width = width * style.width_scale
    opacity = "" if style.opacity >= 1 else f";opacity:{style.opacity:g}"
    if not style.taper:
        return {"d": d, "style": f"fill:none;stroke:{color};stroke-width:{width:.6g};"
                                 f"stroke-linecap:round;stroke-linejoin:round{opacity}"}
    return {"d": taper_outline(d, width), "inkscape:original-d": d,
            "style": f"fill:{color};fill-rule:nonzero;stroke:none{opacity}"}


def taper_effect(width: float) -> inkex.PathEffect:
    """Inkscape's Taper Stroke path effect for one stroke of `width` (its outline is redrawn
    from `inkscape:original-d` whenever the user edits the stroke)."""
    effect = inkex.PathEffect()
    for name, value in (("effect", "taper_stroke"), ("is_visible", "true"), ("lpeversion", "1"),
                        ("stroke_width", f"{width:.6g}"), ("attach_start", f"{TAPER_LENGTH:g}"),
                        ("end_offset", f"{TAPER_LENGTH:g}"), ("start_smoothing", "0.5"),
                        ("end_smoothing", "0.5"), ("jointype", "extrapolated"),
                        ("miter_limit", "100"), ("start_shape", "center"), ("end_shape", "center")):
        effect.set(name, value)
    return effect
