"""docs/plugins.md as data: its sections, each hook's example plugin, the tutorial's commands."""

from __future__ import annotations

import re
from pathlib import Path

PLUGINS_MD = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def sections(text: str | None = None) -> dict[str, str]:
    """Level-2 heading -> the text under it."""
    text = PLUGINS_MD.read_text(encoding="utf-8") if text is None else text
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def blocks(section: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(section) if kind == lang]


def hook_example(hook: str) -> str:
    """The complete plugin module shown in the section of ``hook``."""
    (heading,) = [h for h in sections() if h.startswith(f"{hook}(")]
    (code,) = blocks(sections()[heading], "python")
    return code


def tutorial() -> tuple[list[str], str]:
    """(the shell blocks to run in order, the expected ``gl plugins`` output)."""
    (heading,) = [h for h in sections() if h.startswith("Tutorial")]
    body = sections()[heading]
    return blocks(body, "sh"), blocks(body, "text")[0]
