"""Modelfile templates per model family (``modelfiles/``) and how a variant's Modelfile is composed.

The family comes from the variant (``family = "…"`` in gl.toml) or, when it
names none, from the GGUF: its architecture, then the turn markers of its
embedded chat template, then its vocabulary. Composing replaces the
template's FROM with the variant's GGUF and applies the variant's TEMPLATE,
SYSTEM, LICENSE and PARAMETER overrides.
"""

from __future__ import annotations

import os
from importlib import resources

from gl_plugins.errors import GLError
from gl_plugins.modelfile import parse as mfmod

FAMILIES = ("gemma3", "gemma4", "llama3", "qwen2.5", "qwen3", "mistral", "phi4")
ALIASES = {"chatml": "qwen2.5", "qwen2": "qwen2.5", "qwen": "qwen2.5", "gemma": "gemma3",
           "gemma3n": "gemma3", "llama": "llama3"}
# GGUF general.architecture -> family, where the architecture alone decides it
ARCHITECTURES = {"gemma3": "gemma3", "gemma3n": "gemma3", "gemma3_text": "gemma3", "gemma4": "gemma4",
                 "qwen2": "qwen2.5", "qwen2moe": "qwen2.5", "qwen3": "qwen3", "qwen3moe": "qwen3",
                 "mistral3": "mistral"}
# (marker, family), most specific first: phi4 uses ChatML markers plus <|im_sep|>
SIGNATURES = (("<|turn>", "gemma4"), ("<start_of_turn>", "gemma3"), ("<|start_header_id|>", "llama3"),
              ("<|im_sep|>", "phi4"), ("<|im_start|>", "qwen2.5"), ("[INST]", "mistral"))


def family_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in FAMILIES:
        raise GLError(f"unknown Modelfile family {name!r}; known: {', '.join(FAMILIES)} "
                      f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def template_text(family: str) -> str:
    fam = family_name(family)
    return (resources.files("gl_plugins") / "modelfiles" / f"{fam}.Modelfile").read_text(encoding="utf-8")


def template(family: str) -> mfmod.Modelfile:
    fam = family_name(family)
    return mfmod.parse(template_text(fam), f"modelfiles/{fam}.Modelfile")


def detect_family(info) -> tuple[str | None, str]:
    """(family, why) for a :class:`~gl_plugins.modelfile.lint.ChatInfo`; family None when unknown."""
    arch = info.architecture or "?"
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch], f"GGUF architecture {arch}"
    if info.chat_template:
        for marker, fam in SIGNATURES:
            if marker in info.chat_template:
                if fam == "qwen2.5" and "<think>" in info.chat_template:
                    return "qwen3", f"the GGUF's chat template uses {marker} and <think>"
                return fam, f"the GGUF's chat template uses {marker}"
    for marker, fam in SIGNATURES:
        if marker in info.tokens and (fam != "phi4" or arch == "phi3"):
            return fam, f"the GGUF's vocabulary has {marker}"
    return None, f"GGUF architecture {arch} has no known chat format"


def compose(base: mfmod.Modelfile, from_value: str, *, template_override: str | None = None,
            system: str | None = None, parameters: dict | None = None, license: list[str] | None = None,
            messages: list[dict] | None = None, path: str | None = None) -> mfmod.Modelfile:
    """A new Modelfile: ``base`` with one FROM ``from_value`` and the given overrides applied."""
    cmds = [mfmod.Command("FROM", from_value)]
    params = dict(parameters or {})
    for c in base.commands:
        if c.instruction == "FROM":
            continue
        if c.instruction == "TEMPLATE" and template_override is not None:
            continue
        if c.instruction == "SYSTEM" and system is not None:
            continue
        if c.instruction == "LICENSE" and license is not None:
            continue
        if c.instruction == "MESSAGE" and messages is not None:
            continue
        if c.instruction == "PARAMETER" and c.key in params:
            continue
        cmds.append(mfmod.Command(c.instruction, c.value, c.key))
    if template_override is not None:
        cmds.append(mfmod.Command("TEMPLATE", template_override))
    if system is not None:
        cmds.append(mfmod.Command("SYSTEM", system))
    cmds += mfmod.parameter_commands(params)
    for text in license or []:
        cmds.append(mfmod.Command("LICENSE", text))
    for m in messages or []:
        cmds.append(mfmod.Command("MESSAGE", m["content"], m["role"]))
    return mfmod.Modelfile(cmds, path)


def relative_from(gguf: str | os.PathLike, modelfile_dir: str | os.PathLike) -> str:
    """The FROM value for ``gguf`` seen from a Modelfile in ``modelfile_dir``: ``./…`` inside it, else absolute."""
    rel = os.path.relpath(os.fspath(gguf), os.fspath(modelfile_dir))
    return os.path.abspath(gguf) if rel.startswith("..") else f"./{rel}"
