#!/usr/bin/env python3
"""Extensions > CLIPascene > Sketch Image: the entry point Inkscape runs.

The class is declared here (its work lives in clipascene_ext.effects) because Inkscape's INX
checker looks for the extension class in the script named by the INX file.
"""

from clipascene_ext import effects


class SketchImage(effects.SketchImage):
    """Sketch the selected image and import the chosen cell as a new layer over it."""


if __name__ == "__main__":
    SketchImage().run()
