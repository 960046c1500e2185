"""Ollama model names: ``[host/][namespace/]model[:tag]``, parsed and checked as Ollama does.

Missing parts take Ollama's defaults (``registry.ollama.ai``, ``library``,
``latest``). Namespace: 1-80 of ``[A-Za-z0-9_-]``; model and tag: 1-80 of
``[A-Za-z0-9_.-]``; host: 1-350 of ``[A-Za-z0-9_.:-]``; every part starts with
a letter, a digit or ``_``. A name that breaks a rule is refused with the part
and the reason, before anything is uploaded.

Ollama compares names without regard to case (types/model/name.go
``EqualFold``), and a create keeps the case of the parts of models it already
has (server/routes.go ``getExistingName``). Some tags name no local model:
show, chat, generate and embed send ``NAME:cloud`` and ``NAME:TAG-cloud`` to
ollama.com and read ``NAME:local`` as ``NAME:latest``, in any case
(internal/modelref ``parseSourceSuffix``). Create does not refuse them, so a
model published under one could never be shown or run; gl refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gl_plugins.errors import GLError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_EXTRA = {"host": "_-.:", "namespace": "_-", "model": "_-.", "tag": "_-."}


class NameError_(GLError):
    """A model name Ollama would refuse."""


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        return self.short()

    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def short(self) -> str:
        """The shortest spelling Ollama shows (defaults left out)."""
        out = f"{self.model}:{self.tag}"
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{out}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{out}"
        return out

    def with_namespace(self, namespace: str) -> "ModelName":
        problem = part_problem("namespace", namespace)
        if problem:
            raise NameError_(f"namespace {namespace!r}: {problem}")
        return ModelName(self.host, namespace, self.model, self.tag)

    def same(self, other: "ModelName") -> bool:
        """Ollama compares names case-insensitively."""
        return self.full().lower() == other.full().lower()


def reserved_tag_problem(tag: str) -> str | None:
    """Why Ollama would not reach a local model under this tag, or None."""
    low = tag.lower()
    if low == "cloud" or low.endswith("-cloud"):
        return "is reserved: Ollama sends NAME:cloud and NAME:TAG-cloud to ollama.com, not to a local model"
    if low == "local":
        return "is reserved: Ollama reads NAME:local as NAME:latest"
    return None


def publishable(name: ModelName, *, what: str = "model name") -> ModelName:
    """``name`` when a model created under it can be shown and run locally; else :class:`NameError_`."""
    problem = reserved_tag_problem(name.tag)
    if problem:
        raise NameError_(f"{what} {name.short()!r}: tag {name.tag!r} {problem}")
    return name


def part_problem(kind: str, s: str) -> str | None:
    """Why ``s`` is not a valid ``kind`` part (host/namespace/model/tag), or None."""
    limit = _LIMITS[kind]
    if not s:
        return "is empty"
    if len(s) > limit:
        return f"is {len(s)} characters long; at most {limit} are allowed"
    if not (s[0].isascii() and (s[0].isalnum() or s[0] == "_")):
        return f"must start with a letter, a digit or '_', not {s[0]!r}"
    for c in s[1:]:
        if not (c.isascii() and (c.isalnum() or c in _EXTRA[kind])):
            allowed = "letters, digits and " + " ".join(repr(x) for x in _EXTRA[kind])
            return f"contains {c!r}; only {allowed} are allowed"
    return None


def split_name(s: str) -> dict[str, str]:
    """The parts present in ``s`` (no defaults), split as Ollama's ParseName does."""
    parts: dict[str, str] = {}
    if "@" in s:
        s, _, digest = s.rpartition("@")
        parts["digest"] = digest
    if s.rfind(":") > s.rfind("/"):
        s, _, parts["tag"] = s.rpartition(":")
    if "/" not in s:
        parts["model"] = s
        return parts
    s, _, parts["model"] = s.rpartition("/")
    if "/" not in s:
        parts["namespace"] = s
        return parts
    s, _, parts["namespace"] = s.rpartition("/")
    if "://" in s:
        s = s.split("://", 1)[1]
    parts["host"] = s
    return parts


def parse_name(s: str, *, what: str = "model name") -> ModelName:
    """Parse and check a name; raises :class:`NameError_` naming the bad part."""
    if not isinstance(s, str) or not s:
        raise NameError_(f"{what} is empty")
    parts = split_name(s)
    if "digest" in parts:
        raise NameError_(f"{what} {s!r}: a digest (@…) cannot be used here")
    for kind in ("host", "namespace", "model", "tag"):
        if kind in parts:
            problem = part_problem(kind, parts[kind])
            if problem:
                raise NameError_(f"{what} {s!r}: {kind} {parts[kind]!r} {problem}")
    return ModelName(parts.get("host", DEFAULT_HOST), parts.get("namespace", DEFAULT_NAMESPACE),
                     parts["model"], parts.get("tag", DEFAULT_TAG))


def is_valid(s: str) -> bool:
    try:
        parse_name(s)
    except NameError_:
        return False
    return True
