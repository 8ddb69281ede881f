"""The whole scene: the foreground/background split (and its fallbacks), the composition of
the two regions' sketches, and the matrix pipeline over every column and row, here or on a
Ray cluster (docs/architecture.md)."""
