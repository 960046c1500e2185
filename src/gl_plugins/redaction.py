"""Keeping credentials out of everything gl prints.

Tokens reach gl through the environment (``HF_TOKEN``, ``OLLAMA_API_KEY`` …)
and travel in request headers; a server may echo them back in an error body,
which gl then quotes. :func:`redact` blanks them: the value of every variable
in :data:`SECRET_ENV`, anything after ``Bearer``, and strings shaped like
Hugging Face tokens. The CLI passes every error and warning line through it,
and commands that print server answers (publish) pass their output too.
"""

from __future__ import annotations

import os
import re

SECRET_ENV = ("OLLAMA_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")
MIN_SECRET = 4  # shorter values would blank ordinary words

_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1<redacted>"),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "<HF token>"),
)


def redact(text: str) -> str:
    """``text`` with secret environment values, bearer tokens and HF-shaped tokens blanked out."""
    for key in SECRET_ENV:
        value = os.environ.get(key)
        if value and len(value) >= MIN_SECRET:
            text = text.replace(value, f"<{key}>")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
