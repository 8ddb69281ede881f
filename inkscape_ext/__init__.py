"""The Inkscape extension's files, installed as the package `clipascene_inkscape`.

Nothing imports this package: it carries the `.inx` files, their scripts, `clipascene_ext/`
and the gallery icon inside the wheel, so that `clipascene inkscape install` can copy them
into Inkscape's extensions folder (this file stays behind) and `clipascene inkscape zip`
can pack them for Extensions > Manage Extensions.
"""
