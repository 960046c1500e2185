"""The texts gl runs models on, and which slice serves what.

All come from Python's own ``pydoc_data.topics`` (about 460 KB of English
prose on every Python install), cut into slices of whole topics that never
overlap, so a model is never evaluated on the text its importance matrix was
computed from:

- **evaluation** (:data:`EVALUATION_TOPICS`, about 96,000 characters): the
  text of KL divergence against the base (``gl validate``, ``gl floor``,
  ``bench/quality.py``) and of perplexity (whose small default run reads its
  first :data:`PERPLEXITY_CHARS` characters).
- **calibration** (:data:`CALIBRATION_TOPICS`, about 175,000 characters): the
  text ``llama-imatrix`` computes importance matrices on (``gl imatrix make``,
  ``gl floor --calibrate``, the benches).

The topics differ a little between Python versions, so every cached result
is keyed by the digest of the text it was measured on. gl's published
figures were measured with Python 3.11's topics.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

EVALUATION_TOPICS = ("execmodel", "exceptions", "naming", "compound", "import", "assignment", "try")
CALIBRATION_TOPICS = ("specialnames", "types", "formatstrings", "string-methods", "typesseq")
PERPLEXITY_CHARS = 12000
KINDS = ("evaluation", "calibration", "perplexity")


def _topics(keys) -> str:
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in keys if k in topics.topics)


def text(kind: str) -> str:
    """The text of a slice: ``evaluation``, ``calibration`` or ``perplexity`` (the evaluation text's start)."""
    if kind == "evaluation":
        return _topics(EVALUATION_TOPICS)
    if kind == "calibration":
        return _topics(CALIBRATION_TOPICS)
    if kind == "perplexity":
        return _topics(EVALUATION_TOPICS)[:PERPLEXITY_CHARS]
    raise ValueError(f"unknown text slice {kind!r}; known: {', '.join(KINDS)}")


def digest(kind: str) -> str:
    return hashlib.sha256(text(kind).encode()).hexdigest()[:16]


def text_file(kind: str) -> Path:
    """The slice as a file in gl's cache (named by its digest), for the llama.cpp tools to read."""
    from gl_plugins.atomic import atomic_write
    from gl_plugins.toolchain.llamacpp import cache_root

    path = cache_root() / "texts" / f"pydoc-{kind}-{digest(kind)}.txt"
    if not path.exists():
        atomic_write(path, text(kind), parents=True)
    return path
