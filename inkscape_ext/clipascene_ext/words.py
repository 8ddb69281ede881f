"""One name for one thing: how the picker, the imported layer and the viewer name a cell.

A column is a fidelity (its CLIP layer: a low number follows the photo's shapes, a high one
only its meaning), a row a simplicity (0: the full sketch; each row below keeps fewer
strokes). The backend's web page names them the same way.
"""

from __future__ import annotations

PART_NAMES = {"foreground": "Foreground", "background": "Background"}


def fidelity(layer: int) -> str:
    return f"Fidelity {int(layer)}"


def simplicity(row: int) -> str:
    return f"Simplicity {int(row)}"


def cell_name(layer: int, row: int, part: str = "combined", draft: bool = False) -> str:
    """E.g. "Fidelity 8 · Simplicity 1", " · Foreground" for one region alone, and " (draft)"
    for a draft (a progressive run's early cell, before its final one)."""
    name = f"{fidelity(layer)} · {simplicity(row)}"
    name += f" · {PART_NAMES[part]}" if part in PART_NAMES else ""
    return name + (" (draft)" if draft else "")
