"""Files in and out: input images and their headers, the image-to-canvas frame, output
folders written atomically, and the typed records of a run (docs/architecture.md)."""
