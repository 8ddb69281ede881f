#!/usr/bin/env python3
"""Extensions > CLIPascene > Change Abstraction: the entry point Inkscape runs.

The class is declared here (its work lives in clipascene_ext.effects) because Inkscape's INX
checker looks for the extension class in the script named by the INX file.
"""

from clipascene_ext import effects


class ChangeAbstraction(effects.ChangeAbstraction):
    """Swap an imported layer's strokes for another cell of the same matrix, in place."""


if __name__ == "__main__":
    ChangeAbstraction().run()
