"""How big the picker's thumbnails and preview are on a given screen (no GTK here).

The picker must show every fidelity column, at least two simplicity rows and its buttons on
common laptop screens (1366 x 768, 1280 x 800), whose panels and the window's title bar take
some of the height. The sizes below come from the picker's layout (picker.ui): what it takes
besides the matrix, and what a cell takes besides its thumbnail.
"""

from __future__ import annotations

#: The longest sides, in px, when the screen has room.
THUMBNAIL_MAX = 160
PREVIEW_MAX = 320
THUMBNAIL_MIN = 80
PREVIEW_SMALL = 240
#: Height outside the matrix: title bar and panels (not always left out of the work area),
#: heading, progress, details, two lines of notices, buttons, spacing and margins.
CHROME_HEIGHT = 300
#: Width outside the matrix: window margins and spacing, the row headers, the grid margins.
CHROME_WIDTH = 180
#: What a cell takes besides its thumbnail: button padding, caption, grid spacing.
CELL_EXTRA_WIDTH = 16
CELL_EXTRA_HEIGHT = 35
HEADER_HEIGHT = 36  # the column headers and the grid's margins
#: Rows that must show whole (and a part of the next, so that scrolling is obvious).
ROWS_SHOWN = 2.4


def fit_sizes(area_width: int, area_height: int, columns: int) -> tuple[int, int]:
    """(thumbnail, preview) longest sides in px for a screen work area of that size and a
    matrix of `columns` fidelity columns."""
    preview = PREVIEW_MAX if area_width >= 1200 and area_height >= 760 else PREVIEW_SMALL
    by_height = (area_height - CHROME_HEIGHT - HEADER_HEIGHT) / ROWS_SHOWN - CELL_EXTRA_HEIGHT
    by_width = (area_width - CHROME_WIDTH - preview) / max(columns, 1) - CELL_EXTRA_WIDTH
    thumbnail = int(min(THUMBNAIL_MAX, by_height, by_width))
    return max(THUMBNAIL_MIN, thumbnail), preview


def window_size(thumbnail: int, preview: int, columns: int, rows: int) -> tuple[int, int]:
    """The picker's size with every column and row shown (before the screen caps it)."""
    width = CHROME_WIDTH + preview + columns * (thumbnail + CELL_EXTRA_WIDTH)
    height = CHROME_HEIGHT + HEADER_HEIGHT + rows * (thumbnail + CELL_EXTRA_HEIGHT)
    return width, height
