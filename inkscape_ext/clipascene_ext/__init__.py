"""CLIPascene for Inkscape: the extension's package (inkex, lxml, GTK and the standard library only).

`source` finds the selected bitmaps (and shapes drawn as the object mask) and their bytes,
`client` talks to the local backend, `placement` maps a bitmap's pixel frame into the
document, `mask` rasterises the drawn mask in that frame, `style` and `photo` decide how
strokes look (colours sampled from the photo's pixels), `importer` turns a cell SVG into an
editable, tagged layer, `picker` is the matrix window (fed by `feed`, worded by `words`),
and `effects` glues them into the menu entries.
"""

#: This extension's version (the project's; `clipascene doctor` reads it from an installed copy).
__version__ = "0.1.0"
#: The daemon's HTTP API this extension speaks: /v1/health tells the daemon's, and a mismatch
#: says which of the two to update (client.version_problem).
API_VERSION = 1
