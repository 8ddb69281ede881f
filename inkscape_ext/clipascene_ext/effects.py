"""The two Inkscape effects: Sketch Image and Import Sketch (Change Abstraction).

Sketch Image submits the selected photos to the backend, writes the jobs on each photo
(`photojobs`), opens a viewer beside Inkscape (`viewer`, its own process) and returns at once:
Inkscape stays usable while the backend trains. Import Sketch, on a photo, opens the picker
on that photo's matrices and imports the chosen cell as a new layer; on an imported layer it
swaps in another cell in place. Scripted, a `cell` parameter waits for that cell instead.

Glue only: the image comes from `source`, the sketch from the backend through `client`, the
choice from `picker` (or the scripted `cell` parameter), and the strokes go into the document
through `placement` and `importer`. Nothing is written to stderr on success: Inkscape 1.2
shows any stderr output in a modal dialog.
"""

from __future__ import annotations

import time

import inkex

from .client import DEFAULT_SERVER, Backend, BackendError
from .feed import Chosen
from .importer import build_layer, find_layers, insert_layer, preview_svg, replace_strokes
from .mask import mask_png
from .photo import decode
from .photojobs import CLIP, SERVER, STYLE, choose_job, remember, remembered
from .placement import pixel_to_document, visible_pixel_rect
from .source import ImageSource, image_bytes, selected_images, selected_shapes
from .style import PHOTO, StrokeStyle, option_color
from .words import DRAFT, submitted

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
    """Block until cell (row, column) of the job is final (not a draft); its matrix entry. Raises
    AbortExtension when the job fails, is cancelled, or has no such cell."""
    while True:
        matrix = backend.matrix(job_id)
        cell = next((entry for entry in matrix["cells"]
                     if entry["row"] == row and entry["column"] == column), None)
        if cell is None:
            raise inkex.AbortExtension(
                f"the matrix has {matrix['rows']} rows and {len(matrix['layers'])} columns; "
                f"there is no cell {row},{column}.")
        if cell["ready"] and not cell.get("draft"):  # a draft is replaced by the final cell
            return cell
        if matrix["status"] in ("failed", "cancelled"):
            job = backend.job(job_id)
            raise inkex.AbortExtension(f"the sketch job {matrix['status']}: {job.get('error') or ''}")
        time.sleep(POLL_S)


def choose(backend: Backend, job_id: str, scripted: str, title: str,
           initial: tuple[int, int, str] | None = None, *, style: StrokeStyle,
           photo: bytes | None = None, pixels=None, like=None) -> Chosen | None:
    """The cell to import: the scripted one (waiting for it), or the user's pick in the picker,
    which previews the chosen cell drawn in `style` over the `photo` (its bytes), restyled as
    the user restyled the layer it replaces (`like`). With its fidelity layer: the import
    asks nothing more."""
    cell = parse_cell(scripted)
    if cell is not None:
        entry = wait_for_cell(backend, job_id, cell[0], cell[1])
        return Chosen(*cell, layer=entry["layer"], draft=False)
    from .picker import pick_cell  # GTK only when a window is wanted

    return pick_cell(backend, job_id, title=title, initial=initial, photo=photo,
                     preview=lambda cell_svg: preview_svg(cell_svg, style, pixels, photo, like))


def _backend(server: str) -> Backend:
    backend = Backend(server or DEFAULT_SERVER)
    try:
        health = backend.ensure_running()
    except BackendError as error:
        raise inkex.AbortExtension(str(error)) from None
    if "clip" in health.get("missing", []):
        raise inkex.AbortExtension(
            "the CLIPascene backend has no CLIP weights, so it cannot sketch: "
            f"{health.get('how_to_get_missing') or 'run clipascene models download'} "
            "(`clipascene doctor` lists what that machine has).")
    return backend


def _import_cell(backend: Backend, job_id: str, chosen: Chosen, transform, *,
                 image_id: str, style: StrokeStyle, pixels, clip_rect=None, clip=None):
    """The chosen cell of the job as a detached layer (see importer.build_layer). A draft
    when chosen may be final by the time its file is fetched (never the other way round):
    its layer then says "(draft)" of a final cell, which Import Sketch swaps in place."""
    try:
        cell_svg = backend.cell_svg(job_id, chosen.row, chosen.column, chosen.part)
    except BackendError as error:
        raise inkex.AbortExtension(str(error)) from None
    return build_layer(cell_svg, transform, job_id=job_id, row=chosen.row, column=chosen.column,
                       layer=chosen.layer, part=chosen.part, image_id=image_id,
                       clip_rect=clip_rect, clip=clip, style=style, pixels=pixels,
                       draft=chosen.draft)


def _pixels(style: StrokeStyle, data: bytes):
    """The photo's pixels when the style samples colours from it, else None."""
    return decode(data) if style.color == PHOTO else None


def _input_path(options) -> str | None:
    """The file Inkscape gave the extension (its temporary copy of the document)."""
    return options.input_file if isinstance(options.input_file, str) else None


def _import_over(svg, backend: Backend, job_id: str, chosen, source: ImageSource, style: StrokeStyle,
                 pixels, clip) -> None:
    """Import the chosen cell of the job as a new layer over the photo of `source`."""
    transform = pixel_to_document(source.element, source.pixel_width, source.pixel_height)
    layer = _import_cell(
        backend, job_id, chosen, transform, image_id=source.element.get_id(),
        style=style, pixels=pixels, clip=clip,
        clip_rect=visible_pixel_rect(source.element, source.pixel_width, source.pixel_height))
    insert_layer(svg, layer)


class SketchImage(inkex.EffectExtension):
    """Sketch the selected images: submit one job each, remember them on each photo, open a
    viewer on each beside Inkscape, and return at once. With the scripted `cell` parameter,
    wait for that cell of each job and import it as a new layer over its photo.

    Shapes selected together with a photo are its object mask.
    """

    def add_arguments(self, pars) -> None:
        pars.add_argument("--tab", default="sketch")
        pars.add_argument("--server", default=DEFAULT_SERVER)
        pars.add_argument("--preset", default="auto")
        pars.add_argument("--layers", default="2,8,11")
        pars.add_argument("--rows", type=int, default=8)
        pars.add_argument("--strokes", type=int, default=64)
        pars.add_argument("--split", type=inkex.Boolean, default=True)
        pars.add_argument("--draft", type=inkex.Boolean, default=False)
        pars.add_argument("--seed", type=int, default=0)
        pars.add_argument("--stroke_color", type=inkex.Color, default=inkex.Color("black"))
        pars.add_argument("--color_from_photo", type=inkex.Boolean, default=False)
        pars.add_argument("--width_scale", type=float, default=1.0)
        pars.add_argument("--opacity", type=int, default=100)
        pars.add_argument("--taper", type=inkex.Boolean, default=False)
        pars.add_argument("--clip", default="auto")
        pars.add_argument("--cell", default="")
        # Scripting only (hidden in the dialog): override the preset's steps; 0 keeps them.
        pars.add_argument("--iterations", type=int, default=0)
        pars.add_argument("--row_steps", type=int, default=0)

    def stroke_style(self) -> StrokeStyle:
        options = self.options
        color = PHOTO if options.color_from_photo else option_color(options.stroke_color)
        return StrokeStyle(color, options.width_scale, options.opacity / 100.0, options.taper)

    def job_params(self) -> dict:
        options = self.options
        try:
            layers = [int(part) for part in options.layers.split(",") if part.strip()]
        except ValueError:
            raise inkex.AbortExtension(
                f"fidelity columns must be CLIP layer numbers like 2,8,11, not {options.layers!r}."
            ) from None
        params = {"preset": options.preset, "layers": layers, "rows": options.rows,
                  "strokes": options.strokes, "split": bool(options.split), "seed": options.seed}
        if options.draft:
            params.update(DRAFT)
        if options.iterations > 0:
            params["iterations"] = options.iterations
        if options.row_steps > 0:
            params["row_steps"] = options.row_steps
        return params

    def effect(self) -> None:
        selection = list(self.svg.selection.values())
        sources = selected_images(self.svg, selection, self.document_path(), _input_path(self.options))
        shapes = selected_shapes(selection)
        style = self.stroke_style()
        clip = {"auto": None, "on": True, "off": False}.get(self.options.clip)
        params = self.job_params()
        backend = _backend(self.options.server)
        try:
            jobs = [backend.submit(source.data, source.filename, params,
                                   mask=mask_png(shapes, source) if shapes else None)
                    for source in sources]
        except BackendError as error:
            raise inkex.AbortExtension(str(error)) from None
        for source, job in zip(sources, jobs, strict=True):
            remember(source.element, job["id"], style.encode(), self.options.clip, backend.server)
        scripted = parse_cell(self.options.cell)
        estimate = submitted(jobs)
        for number, (source, job) in enumerate(zip(sources, jobs, strict=True), 1):
            if scripted is None:
                title = f"CLIPascene — {source.filename}"
                if len(sources) > 1:
                    title += f" ({number} of {len(sources)})"
                self.open_viewer(backend, job["id"], title, style, source.data, estimate)
                continue
            pixels = _pixels(style, source.data)
            try:
                chosen = choose(backend, job["id"], self.options.cell, "", style=style)
            except BackendError as error:
                raise inkex.AbortExtension(str(error)) from None
            _import_over(self.svg, backend, job["id"], chosen, source, style, pixels, clip)

    @staticmethod
    def open_viewer(backend: Backend, job_id: str, title: str, style: StrokeStyle,
                    photo: bytes, estimate: str = "") -> None:
        """The matrix in a window of its own beside Inkscape (see `viewer`), saying at its
        top how long the backend expects the sketch to take (`estimate`). Without one (no
        display, no GTK) the job runs all the same and Import Sketch… shows it."""
        from . import viewer

        try:
            viewer.start(backend.server, job_id, title, style.encode(), photo, estimate=estimate)
        except BackendError:
            pass  # the viewer is a convenience: the job and its record on the photo stand


class ChangeAbstraction(inkex.EffectExtension):
    """Import Sketch…: with a photo selected, open the picker on the matrices sketched of it
    (the artist picks one when there are several) and import the chosen cell as a new layer
    over it; with an imported layer (or one of its strokes) selected, swap its strokes for
    another cell of the same matrix, in place, styled as they were imported (and as the user
    restyled them since)."""

    def add_arguments(self, pars) -> None:
        pars.add_argument("--server", default=DEFAULT_SERVER)
        pars.add_argument("--cell", default="")
        pars.add_argument("--job", default="")  # scripted: which of the photo's jobs (else the newest)

    def imported_layer(self):
        """The CLIPascene layer the selection is in, or None when a photo is selected."""
        for element in self.svg.selection.values():
            node = element
            while node is not None and node is not self.svg:
                if node.get("data-clipascene-job"):
                    return node
                node = node.getparent()
        if any(isinstance(element, inkex.Image) for element in self.svg.selection.values()):
            return None
        raise inkex.AbortExtension(
            "select a photo sketched with Sketch Image… (or a layer CLIPascene imported, or "
            "one of its strokes).")

    def photo_bytes(self, image_id: str, needed: bool) -> bytes | None:
        """The bytes of the photo the layer was sketched from; None when it is gone, unless
        they are `needed` (to sample colours): then AbortExtension."""
        image = self.svg.getElementById(image_id) if image_id else None
        if image is None:
            if not needed:
                return None
            raise inkex.AbortExtension(
                "the photo this layer was sketched from is no longer in the document, so its "
                "colours cannot be sampled: restore it, or re-import the sketch with a colour.")
        try:
            return image_bytes(image, self.document_path(), _input_path(self.options))[0]
        except inkex.AbortExtension:
            if needed:
                raise
            return None

    def effect(self) -> None:
        layer = self.imported_layer()
        if layer is None:
            self.import_onto_photo()
            return
        job_id = layer.get("data-clipascene-job")
        current = parse_cell(layer.get("data-clipascene-cell", ""))
        style = StrokeStyle.decode(layer.get("data-clipascene-style"))
        image_id = layer.get("data-clipascene-image", "")
        photo = self.photo_bytes(image_id, needed=style.color == PHOTO)
        pixels = _pixels(style, photo)
        image = self.svg.getElementById(image_id) if image_id else None
        backend = _backend((image.get(SERVER) if image is not None else None) or self.options.server)
        try:
            chosen = choose(backend, job_id, self.options.cell, "CLIPascene — change abstraction",
                            initial=current, style=style, photo=photo, pixels=pixels, like=layer)
        except BackendError as error:
            raise inkex.AbortExtension(str(error)) from None
        if chosen is None:
            return
        replacement = _import_cell(backend, job_id, chosen, inkex.Transform(layer.get("transform")),
                                   image_id=image_id, style=style, pixels=pixels)
        replace_strokes(layer, replacement)

    def photo_jobs(self, image) -> list[str]:
        """The jobs remembered on the photo, then those of the layers imported over it."""
        jobs = remembered(image)
        for layer in reversed(find_layers(self.svg, image_id=image.get_id())):
            if layer.get("data-clipascene-job") not in jobs:
                jobs.append(layer.get("data-clipascene-job"))
        return jobs

    def import_onto_photo(self) -> None:
        """Open the picker on the selected photo's matrices and import the chosen cell as a
        new layer over it, styled as chosen in Sketch Image's dialog."""
        images = [element for element in self.svg.selection.values() if isinstance(element, inkex.Image)]
        if len(images) > 1:
            raise inkex.AbortExtension("select one photo to import a sketch of it.")
        (image,) = images
        (source,) = selected_images(self.svg, [image], self.document_path(), _input_path(self.options))
        backend = _backend(image.get(SERVER) or self.options.server)
        jobs = []
        for job_id in self.photo_jobs(image):
            try:
                jobs.append(backend.job(job_id))
            except BackendError:
                continue  # purged from the backend (or never there): not offered
        if not jobs:  # e.g. a copy of the photo in another document: the backend knows its bytes
            try:
                jobs = backend.jobs_of_image(source.data)
            except BackendError:
                jobs = []  # an older backend that cannot be asked
        if not jobs:
            raise inkex.AbortExtension(
                "this photo has not been sketched yet (or the backend no longer has its "
                "sketches): choose Extensions ▸ CLIPascene ▸ Sketch Image… first; its matrix "
                "can then be imported from here at any time.")
        style = StrokeStyle.decode(image.get(STYLE))
        clip = {"auto": None, "on": True, "off": False}.get(image.get(CLIP) or "auto")
        pixels = _pixels(style, source.data)
        cell = parse_cell(self.options.cell)
        if cell is not None:
            job = next((job for job in jobs if job["id"] == self.options.job), jobs[0])
        else:
            try:
                job = choose_job(jobs, f"CLIPascene — {source.filename}")
            except RuntimeError as error:
                raise inkex.AbortExtension(str(error)) from None
            if job is None:
                return
        try:
            chosen = choose(backend, job["id"], self.options.cell, f"CLIPascene — {source.filename}",
                            style=style, photo=source.data, pixels=pixels)
        except BackendError as error:
            raise inkex.AbortExtension(str(error)) from None
        if chosen is not None:
            _import_over(self.svg, backend, job["id"], chosen, source, style, pixels, clip)
