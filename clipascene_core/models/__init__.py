"""Pretrained models: CLIP loading and its precision, the weights registry, downloads
(docs/architecture.md)."""
