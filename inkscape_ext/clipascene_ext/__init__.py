"""CLIPascene for Inkscape: the extension's package (inkex, lxml and the standard library only).

`source` finds the selected bitmap and its bytes, `client` talks to the local backend,
`placement` maps the bitmap's pixel frame into the document, `importer` turns a cell SVG into
an editable, tagged layer, and `effects` glues them into the menu entries.
"""
