"""One sketch of one image region at one CLIP layer, and its simpler rows: strokes, the
differentiable renderer, augmentations, CLIP losses, stroke seeding, the fidelity and
simplicity training and the engine that runs them (docs/algorithm.md, docs/architecture.md)."""
