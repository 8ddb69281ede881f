"""The two Inkscape effects: Sketch Image and Change Abstraction.

Glue only: the image comes from `source`, the sketch from the backend through `client`, the
choice from `picker` (or the scripted `cell` parameter), and the strokes go into the document
through `placement` and `importer`. Nothing is written to stderr on success: Inkscape 1.2
shows any stderr output in a modal dialog.
"""

from __future__ import annotations

import time

import inkex

from .client import DEFAULT_SERVER, Backend, BackendError
from .importer import build_layer, find_layers, insert_layer, replace_strokes
from .placement import pixel_to_document, visible_pixel_rect
from .source import selected_image

PARTS = ("combined", "foreground", "background")
POLL_S = 1.0


def parse_cell(text: str) -> tuple[int, int, str] | None:
    """'ROW,COL' or 'ROW,COL,PART' -> (row, column, part); '' -> None (open the picker)."""
    text = (text or "").strip()
    if not text:
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        row, column = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise inkex.AbortExtension(f"cell must be ROW,COL or ROW,COL,PART, not {text!r}.") from None
    part = parts[2] if len(parts) > 2 else "combined"
    if part not in PARTS or row < 0 or column < 0 or len(parts) > 3:
        raise inkex.AbortExtension(f"cell must be ROW,COL or ROW,COL,PART with PART one of "
                                   f"{', '.join(PARTS)}, not {text!r}.")
    return row, column, part


def wait_for_cell(backend: Backend, job_id: str, row: int, column: int) -> dict:
    """Block until cell (row, column) of the job is ready; its matrix entry. Raises
    AbortExtension when the job fails, is cancelled, or has no such cell."""
    while True:
        matrix = backend.matrix(job_id)
        cell = next((entry for entry in matrix["cells"]
                     if entry["row"] == row and entry["column"] == column), None)
        if cell is None:
            raise inkex.AbortExtension(
                f"the matrix has {matrix['rows']} rows and {len(matrix['layers'])} columns; "
                f"there is no cell {row},{column}.")
        if cell["ready"]:
            return cell
        if matrix["status"] in ("failed", "cancelled"):
            job = backend.job(job_id)
            raise inkex.AbortExtension(f"the sketch job {matrix['status']}: {job.get('error') or ''}")
        time.sleep(POLL_S)


def choose(backend: Backend, job_id: str, scripted: str, title: str,
           initial: tuple[int, int, str] | None = None) -> tuple[int, int, str] | None:
    """The cell to import: the scripted one (waiting for it), or the user's pick."""
    cell = parse_cell(scripted)
    if cell is not None:
        wait_for_cell(backend, job_id, cell[0], cell[1])
        return cell
    from .picker import pick_cell  # GTK only when a window is wanted

    return pick_cell(backend, job_id, title=title, initial=initial)


def _backend(server: str) -> Backend:
    backend = Backend(server or DEFAULT_SERVER)
    try:
        health = backend.ensure_running()
    except BackendError as error:
        raise inkex.AbortExtension(str(error)) from None
    if "clip" in health.get("missing", []):
        raise inkex.AbortExtension(
            "the CLIPascene backend has no CLIP weights, so it cannot sketch: "
            f"{health.get('how_to_get_missing') or 'run python3 install.py'}.")
    return backend


class SketchImage(inkex.EffectExtension):
    """Sketch the selected image and import the chosen cell as a new layer over it."""

    def add_arguments(self, pars) -> None:
        pars.add_argument("--tab", default="sketch")
        pars.add_argument("--server", default=DEFAULT_SERVER)
        pars.add_argument("--preset", default="preview")
        pars.add_argument("--layers", default="2,8,11")
        pars.add_argument("--rows", type=int, default=8)
        pars.add_argument("--strokes", type=int, default=64)
        pars.add_argument("--split", type=inkex.Boolean, default=True)
        pars.add_argument("--cell", default="")
        # Scripting only (hidden in the dialog): override the preset's steps; 0 keeps them.
        pars.add_argument("--iterations", type=int, default=0)
        pars.add_argument("--row_steps", type=int, default=0)

    def effect(self) -> None:
        source = selected_image(self.svg, list(self.svg.selection.values()), self.document_path())
        try:
            layers = [int(part) for part in self.options.layers.split(",") if part.strip()]
        except ValueError:
            raise inkex.AbortExtension(
                f"fidelity columns must be CLIP layer numbers like 2,8,11, not {self.options.layers!r}."
            ) from None
        backend = _backend(self.options.server)
        params = {"preset": self.options.preset, "layers": layers, "rows": self.options.rows,
                  "strokes": self.options.strokes, "split": bool(self.options.split)}
        if self.options.iterations > 0:
            params["iterations"] = self.options.iterations
        if self.options.row_steps > 0:
            params["row_steps"] = self.options.row_steps
        try:
            job = backend.submit(source.data, source.filename, params)
            chosen = choose(backend, job["id"], self.options.cell, f"CLIPascene — {source.filename}")
            if chosen is None:
                return  # closed or cancelled: the document stays as it was
            row, column, part = chosen
            cell_svg = backend.cell_svg(job["id"], row, column, part)
            layer_number = backend.matrix(job["id"])["layers"][column]
        except BackendError as error:
            raise inkex.AbortExtension(str(error)) from None
        transform = pixel_to_document(source.element, source.pixel_width, source.pixel_height)
        layer = build_layer(
            cell_svg, transform, job_id=job["id"], row=row, column=column, layer=layer_number,
            part=part, image_id=source.element.get_id(),
            clip_rect=visible_pixel_rect(source.element, source.pixel_width, source.pixel_height),
        )
        insert_layer(self.svg, layer)


class ChangeAbstraction(inkex.EffectExtension):
    """Swap an imported layer's strokes for another cell of the same matrix, in place."""

    def add_arguments(self, pars) -> None:
        pars.add_argument("--server", default=DEFAULT_SERVER)
        pars.add_argument("--cell", default="")

    def imported_layer(self):
        """The CLIPascene layer the selection is in, or the newest one over a selected image."""
        for element in self.svg.selection.values():
            node = element
            while node is not None and node is not self.svg:
                if node.get("data-clipascene-job"):
                    return node
                node = node.getparent()
            if isinstance(element, inkex.Image):
                layers = find_layers(self.svg, image_id=element.get_id())
                if layers:
                    return layers[-1]
        raise inkex.AbortExtension(
            "select a layer imported by CLIPascene (or one of its strokes, or its photo).")

    def effect(self) -> None:
        layer = self.imported_layer()
        job_id = layer.get("data-clipascene-job")
        current = parse_cell(layer.get("data-clipascene-cell", ""))
        backend = _backend(self.options.server)
        try:
            chosen = choose(backend, job_id, self.options.cell, "CLIPascene — change abstraction",
                            initial=current)
            if chosen is None:
                return
            row, column, part = chosen
            cell_svg = backend.cell_svg(job_id, row, column, part)
            layer_number = backend.matrix(job_id)["layers"][column]
        except BackendError as error:
            raise inkex.AbortExtension(str(error)) from None
        replacement = build_layer(
            cell_svg, inkex.Transform(layer.get("transform")), job_id=job_id, row=row,
            column=column, layer=layer_number, part=part,
            image_id=layer.get("data-clipascene-image", ""),
        )
        replace_strokes(layer, replacement)
