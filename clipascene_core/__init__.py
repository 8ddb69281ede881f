"""CLIPascene: scene sketching at several levels of abstraction, as a library."""

__version__ = "0.1.0"
