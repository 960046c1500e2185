"""Which Ollama server gl talks to: its version (``GET /api/version``) and what that version does.

``/api/version`` answers ``{"version": "0.33.0-rc2"}`` (server/routes.go; the
release workflow sets ``version.Version`` from the tag without its ``v``). A
development build answers ``0.0.0``: gl takes it for the newest behaviour.
The versions where behaviour gl depends on starts, from the tags of
ollama/ollama (first tag containing the commit):

- ``0.20.0``: Gemma 4; create sets renderer and parser ``gemma4`` for
  architecture gemma4 (server/create.go, ``createModel``);
- ``0.30.0-rc16``: create rewrites every uploaded GGUF with
  ``llama-quantize --allow-requantize IN OUT COPY`` and stores the result
  (server/create.go, ``copyLayerWithLlamaQuantize``);
- ``0.30.0-rc30``: a Go TEMPLATE with fewer capabilities than the GGUF's own
  chat template is passed over for that Jinja (server/images.go,
  ``shouldPreferChatTemplate``); from 0.30.0 llama-server renders the Jinja.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GEMMA4 = "0.20.0"
COPY_REWRITE = "0.30.0-rc16"
PREFERS_CHAT_TEMPLATE = "0.30.0-rc30"

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _pre_key(pre: str | None) -> tuple:
    """Pre-releases sort before the release; ``rc9`` before ``rc16`` (Ollama's tags are rcN)."""
    if pre is None:
        return (1,)
    parts = []
    for piece in pre.split("."):
        m = re.fullmatch(r"([A-Za-z-]*)(\d*)", piece)
        parts.append((m.group(1), int(m.group(2) or -1)) if m else (piece, -1))
    return (0, *parts)


@dataclass(frozen=True)
class OllamaVersion:
    text: str
    release: tuple[int, int, int]
    pre: str | None = None

    @property
    def dev(self) -> bool:
        return self.release == (0, 0, 0)

    def key(self) -> tuple:
        return (self.release, _pre_key(self.pre))

    def at_least(self, other: str) -> bool:
        """Whether this server has what started in version ``other``; a dev build has everything."""
        if self.dev:
            return True
        return self.key() >= parse_version(other).key()

    def __str__(self) -> str:
        return self.text

    @property
    def rewrites_gguf(self) -> bool:
        return self.at_least(COPY_REWRITE)

    @property
    def prefers_chat_template(self) -> bool:
        return self.at_least(PREFERS_CHAT_TEMPLATE)

    @property
    def knows_gemma4(self) -> bool:
        return self.at_least(GEMMA4)


def parse_version(text: str) -> OllamaVersion:
    """``0.33.0``, ``0.33.0-rc2``, ``v0.20.1``; raises ValueError for anything else."""
    m = _VERSION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an Ollama version")
    return OllamaVersion(text.strip(), (int(m.group(1)), int(m.group(2)), int(m.group(3))), m.group(4))


def fetch_version(http) -> OllamaVersion | None:
    """The version an Ollama server reports (``http`` is the ollama client's httpx client), or None."""
    try:
        r = http.get("/api/version")
        if r.status_code != 200:
            return None
        return parse_version(str(r.json().get("version", "")))
    except (ValueError, AttributeError):
        return None
