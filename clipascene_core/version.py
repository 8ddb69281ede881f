"""The version of the distribution (pyproject.toml reads it; the Inkscape extension states its own,
and a test holds the two equal)."""

__version__ = "0.1.0"
