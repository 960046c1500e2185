"""Publishing a gl.toml variant: what a publisher is given, what it returns, and which one runs.

``gl publish NAME:TAG`` resolves the variant, makes sure its GGUF exists
(building it when gl.toml says how), refuses it when validation reports
errors (unless forced), renders and lints its Modelfile, then hands a
:class:`PublishRequest` to a publisher plugin. Publishers are registered with
``gl_register_publishers``; the built-ins are ``ollama`` and ``bundle``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gl_plugins import digests
from gl_plugins.errors import GLError
from gl_plugins.findings import Finding, has_errors
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.modelfile.lint import ChatInfo, chat_info, lint_modelfile
from gl_plugins.modelfile.templates import FAMILIES, compose, detect_family, family_name, template
from gl_plugins.project.config import Config, PublishSettings, Variant
from gl_plugins.publish.chat_format import ChatFormat, decide
from gl_plugins.publish.names import ModelName, parse_name, publishable
from gl_plugins.publish.server import OllamaVersion


@dataclass
class PublishOptions:
    """Where and how to publish; what ``available()`` and ``publish()`` read."""

    host: str | None = None  # Ollama host; None: $OLLAMA_HOST, then Ollama's default
    namespace: str | None = None
    push: bool = False
    insecure: bool = False
    retry_seconds: float = 60.0
    target: str | None = None  # the part after ':' in --to NAME:TARGET (bundle folder)
    bundle_dir: Path | None = None  # parent of default bundle folders
    dry_run: bool = False
    progress: bool = True
    # what the chosen publisher found out about the server (``available()`` fills it in); None: unknown
    server_version: OllamaVersion | None = None

    def host_url(self) -> str:
        from ollama._client import _parse_host

        return _parse_host(self.host or os.environ.get("OLLAMA_HOST"))


@dataclass
class PublishRequest:
    name: ModelName
    gguf: Path
    digest: str  # hex sha256 of the GGUF
    size: int
    modelfile: mfmod.Modelfile  # FROM is the GGUF's absolute path
    create: dict  # the /api/create body: model, files, template, system, license, parameters, messages, …
    options: PublishOptions
    variant: Variant | None = None
    family: str | None = None
    echo: object = print  # progress lines (stderr in the CLI)
    seconds: dict = field(default_factory=dict)  # time per preparation step, e.g. {"hash": 3.2}
    chat_format: ChatFormat | None = None  # how the server will render the chat
    blob: Path | None = None  # the file uploaded when it is not the GGUF itself (a canonical copy)
    architecture: str | None = None  # the GGUF's general.architecture
    has_chat_template: bool = False  # the GGUF carries tokenizer.chat_template

    @property
    def upload_path(self) -> Path:
        return self.blob or self.gguf


@dataclass
class PublishResult:
    publisher: str
    model: str
    location: str  # server URL or bundle folder
    actions: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # dry run: the exact requests, in order
    uploaded_bytes: int = 0
    created: bool = False
    unchanged: bool = False
    pushed: str | None = None
    files: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # time per step, e.g. {"upload": 1.9}

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- choosing a publisher

def publishers() -> dict:
    from gl_plugins.host import collect

    return collect("gl_register_publishers")


def _why_not(publisher, options: PublishOptions) -> str | None:
    from gl_plugins import host

    return host.call(publisher, "available", options, returns=(str, type(None)))


def choose(to: str, options: PublishOptions, found: dict | None = None):
    """(publisher, reason) for ``--to`` (``auto``, ``ollama``, ``bundle:DIR`` or another plugin)."""
    found = publishers() if found is None else found
    name, _, target = to.partition(":")
    name = name.strip() or "auto"
    if name == "auto":
        ollama, bundle = found.get("ollama"), found.get("bundle")
        if ollama is None or bundle is None:
            raise GLError("--to auto needs the ollama and bundle publishers; one of them is not loaded")
        why_not = _why_not(ollama, options)
        if why_not is None:
            return ollama, f"an Ollama server answered at {options.host_url()}"
        options.target = target or None
        return bundle, f"{why_not}; writing an offline bundle instead"
    if name not in found:
        raise GLError(f"no publisher named {name!r}; loaded publishers: {', '.join(sorted(found)) or 'none'}")
    pub = found[name]
    options.target = target or None
    why_not = _why_not(pub, options)
    if why_not is not None:
        hint = "; use --to bundle:DIR to publish offline" if name == "ollama" else ""
        raise GLError(f"publisher {name} cannot publish: {why_not}{hint}")
    return pub, f"--to {to}"


# ---------------------------------------------------------------- preparing a request

def variant_modelfile(variant: Variant, gguf: Path, info: ChatInfo) -> tuple[mfmod.Modelfile, str, str]:
    """(Modelfile with FROM = the GGUF's absolute path, family or custom file, why), before the chat format
    is decided (:func:`chat_modelfile`)."""
    if variant.modelfile is not None:
        base = mfmod.parse_file(variant.modelfile, require_from=False)
        source, why = os.fspath(variant.modelfile), f"{variant.keypath}.modelfile"
    else:
        if variant.family:
            fam, why = family_name(variant.family), f"{variant.keypath}.family"
        else:
            fam, why = detect_family(info)
            if fam is None:
                raise GLError(f"{variant.keypath}: cannot tell the Modelfile family of {gguf.name} ({why}); set "
                              f"family = one of {', '.join(FAMILIES)}")
        base, source = template(fam), fam
    mf = compose(base, os.fspath(gguf.absolute()), template_override=variant.template, system=variant.system,
                 parameters=variant.parameters or None, license=variant.license, messages=variant.messages,
                 path=f"{variant.name} Modelfile")
    return mf, source, why


def chat_modelfile(variant: Variant, mf: mfmod.Modelfile, source: str, info: ChatInfo,
                   server: OllamaVersion | None) -> tuple[mfmod.Modelfile, ChatFormat]:
    """The Modelfile to send for this server, and how its chat will be rendered (publish/chat_format.py)."""
    own = variant.template is not None or variant.modelfile is not None
    if variant.template is not None:
        label = f"{variant.keypath}.template"
    else:
        label = source if variant.modelfile is not None else f"modelfiles/{source}"
    return decide(mf, architecture=info.architecture, chat_template=info.chat_template, server=server,
                  own_template=own, source=label)


def create_body(name: ModelName, mf: mfmod.Modelfile, gguf: Path, digest: str) -> dict:
    """The exact /api/create body for this Modelfile, with the GGUF as ``files``."""
    body = {"model": name.short()}
    body.update(mfmod.create_request(mf, gguf.parent, lambda p: f"sha256:{digest}"))
    return body


def lint_variant(mf: mfmod.Modelfile, info: ChatInfo) -> list[Finding]:
    return lint_modelfile(mf, gguf=info, check_from=True)


def hash_with_progress(path: Path, echo, progress: bool) -> tuple[str, bool]:
    size = path.stat().st_size
    if digests.cached(path):
        return digests.digest(path)
    from tqdm import tqdm

    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {path.name}",
              disable=None if progress else True, leave=False) as bar:
        return digests.digest(path, progress=bar.update)


def build_request(cfg: Config, variant: Variant, options: PublishOptions, *, echo=print,
                  findings_out: list | None = None) -> PublishRequest:
    """Everything a publisher needs; ``findings_out`` receives the Modelfile lint findings."""
    name = publishable(parse_name(variant.name, what=f"{variant.keypath} model name"),
                       what=f"{variant.keypath} model name")
    if options.push:
        if not options.namespace:
            raise GLError(f"--push needs publish.namespace in {cfg.path} (the ollama.com account to push to)")
        name.with_namespace(options.namespace)
    gguf = variant.gguf
    info = chat_info(gguf)
    mf, source, why = variant_modelfile(variant, gguf, info)
    mf, chat = chat_modelfile(variant, mf, source, info, options.server_version)
    findings = lint_variant(mf, info)
    if findings_out is not None:
        findings_out.extend(findings)
    started = time.monotonic()
    digest, was_cached = hash_with_progress(gguf, echo, options.progress)
    hashed = {} if was_cached else {"hash": time.monotonic() - started}
    body = create_body(name, mf, gguf, digest)
    return PublishRequest(name, gguf, digest, gguf.stat().st_size, mf, body, options, variant,
                          source, echo, hashed, chat, architecture=info.architecture,
                          has_chat_template=bool(info.chat_template))


def options_from(settings: PublishSettings, *, host=None, push=False, dry_run=False,
                 progress=True) -> PublishOptions:
    return PublishOptions(host=host or settings.host, namespace=settings.namespace, push=push,
                          insecure=settings.insecure, retry_seconds=settings.retry_seconds,
                          bundle_dir=settings.bundle_dir, dry_run=dry_run, progress=progress)


def refuse_if_errors(findings: list[Finding], what: str, force: bool) -> None:
    if has_errors(findings) and not force:
        errors = [f for f in findings if f.severity == "error"]
        codes = ", ".join(sorted({f.code for f in errors}))
        raise GLError(f"{what} has {len(errors)} error finding{'s' if len(errors) != 1 else ''} ({codes}); "
                      f"fix them or publish anyway with --force")
