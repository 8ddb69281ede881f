"""Writing result files so that a reader never sees a half-written one."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .records import Manifest, OutputFolder


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), not mkstemp's private 0600:
    results are for sharing, opening in other programs, serving."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_png(path: str | Path, image) -> None:
    """Encode a PIL image as PNG and write it atomically."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


#: A temporary file of `atomic_write_bytes`: ".{name}.{12 hex digits}.part".
_PART = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.part$")


def claim_output_folder(folder: str | Path, layers, rows: int, split: bool,
                        inputs: tuple[Path, ...] = ()) -> int:
    """Make `folder` ready for a run of `rows` x `layers` cells (two regions if `split`),
    replacing an earlier run's results and nothing else; returns how many files went.

    Only what an earlier run recorded as its own is deleted: its manifest, and the files that
    manifest's matrix names (its cells, grid, mask, targets and attention maps, and their
    interrupted writes); an input (`inputs`) never. Raises ConfigError, before anything is
    changed, when the run would write over a file no run recorded (a manifest not of a run,
    a user's mask.png or grid.png) or over an input. Then writes a manifest claiming the
    folder for this run, so that a run interrupted before its first cell is replaced by the
    next one, as any other."""
    root = Path(folder)
    sources = {path.resolve() for path in inputs}
    planned = _layout_files(layers, rows, split, ["background", "foreground"] if split else ["scene"])
    earlier = _recorded_files(root)
    present = [path for pattern in OutputFolder.PATTERNS for path in root.glob(pattern)
               if path.is_file() or path.is_symlink()]
    replaced, foreign = [], []
    for path in present:
        name = path.relative_to(root).as_posix()
        if path.resolve() in sources:
            if name in planned:
                raise ConfigError(f"--out {root}: the input {name} has the name of a result, and "
                                  "results never overwrite an input: move it out of the folder, "
                                  "or choose another --out.")
        elif _owner_name(name) in earlier:
            replaced.append(path)
        elif name in planned:
            foreign.append(name)
    if foreign:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"--out {root} holds {listed}, which no earlier run recorded as its "
                          "own, and this run would write over them: move them, or choose another "
                          "--out (nothing was written).")
    for path in replaced:
        path.unlink()
    atomic_write_json(root / OutputFolder.MANIFEST, Manifest(
        layers=list(layers), rows=rows, regions=["background", "foreground"] if split else ["scene"],
        parameters={"split": split}).to_dict())
    return len(replaced)


def _owner_name(name: str) -> str:
    """The result an interrupted write's temporary file was for; any other name as it is."""
    folder, _, leaf = name.rpartition("/")
    match = _PART.match(leaf)
    return f"{folder}/{match[1]}".lstrip("/") if match else name


def _layout_files(layers, rows: int, split: bool, regions) -> set[str]:
    """The names a run of `rows` x `layers` cells over `regions` (labels) writes."""
    names = {OutputFolder.MANIFEST, OutputFolder.GRID} | ({OutputFolder.MASK} if split else set())
    for label in regions:
        region = "object" if label == "foreground" else label
        names |= {OutputFolder.attention(region), OutputFolder.target(region)}
    for row in range(rows):
        for layer in layers:
            names |= set(OutputFolder.cell_files(row, layer, split).values())
    return names


def _recorded_files(root: Path) -> set[str]:
    """The files an earlier run in `root` recorded as its own, by its manifest: the names
    its matrix's layout gives (a cell written just before an interruption included)."""
    folder = OutputFolder(root)
    try:  # the kind as written: a JSON file of other keys is not taken for a run's manifest
        kind = json.loads(folder.path(OutputFolder.MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return set()
    manifest = folder.read_manifest()
    if manifest is None or kind != "clipascene-matrix":
        return set()
    split = manifest.split or bool(manifest.parameters.get("split"))
    regions = [*manifest.regions, *(["background", "foreground"] if split else [])]
    names = _layout_files(manifest.layers, manifest.rows, split, regions)
    for cell in manifest.cells:
        names |= set(cell.files.values())
    return names
