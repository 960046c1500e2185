"""A local stand-in for the Ollama server, following the API in FACTS.md (the Ollama section).

It is the only stand-in the test suite uses: gl talks to it through the
official ``ollama`` client exactly as it would talk to a real server. It keeps
its own store like ``OLLAMA_MODELS``: ``blobs/sha256-<hex>`` and
``manifests/<host>/<namespace>/<model>/<tag>`` (schemaVersion 2, Ollama's
media types, a config blob with model_format/model_family/model_type/
file_type). Pushes land in a separate ``registry/`` folder.

Behaviour, as Ollama v0.33.0-rc2's source has it (file and function beside each):

- ``GET /api/version``: ``{"version": VERSION}`` (server/routes.go ``VersionHandler``).
- ``HEAD /api/blobs/<digest>``: 400 unless ``sha256[:-]`` and 64 hex digits
  (manifest/paths.go ``BlobsPath``), 404 ``blob "…" not found``, 200
  (server/routes.go ``HeadBlobHandler``).
- ``POST /api/blobs/<digest>``: 200 when it exists (the body is not read);
  else the bytes are stored and their ``sha256:<lowercase hex>`` compared
  literally with the path's digest: 400 ``digest mismatch, expected …, got …``,
  so only ``sha256:<lowercase hex>`` can succeed; 201 (server/routes.go
  ``CreateBlobHandler``). The bytes become a blob only after the check.
- ``POST /api/create`` (server/create.go ``CreateHandler`` / ``createModel``):
  errors found before streaming are an HTTP status with ``{"error": …}``;
  afterwards a ``{"error": …}`` line with status 200. ``renderer``, ``parser``
  and ``requires`` go into the config blob. A name that matches an existing
  model's parts without regard to case takes their case (server/routes.go
  ``getExistingName``). Files: ``parsing GGUF``, then template detection
  (server/model.go ``detectChatTemplate``: the GGUF's chat template against the
  ``templates`` table by Levenshtein distance below 100, as template/template.go
  ``Named`` does with template/index.json; the match adds a template layer and
  its parameters, which sent parameters override, ``setParameters``). Every
  model GGUF without compatibility tensors (``a.``, ``mm.``, ``mtp.``, ``s.``,
  ``v.``) is rewritten with the real ``llama-quantize --allow-requantize IN OUT
  COPY`` (``copyLayerWithLlamaQuantize``); the manifest holds the result's
  digest, and a file llama-quantize cannot load fails the create with
  ``failed to validate GGUF with llama-quantize without compatibility patches: …``.
  For architecture gemma4, renderer and parser ``gemma4`` are set when not
  sent, and stop ``<turn|>`` when no stop is sent (laguna and nemotron_h get
  their renderers likewise). Statuses: ``parsing GGUF``, ``validating GGUF
  model``, ``verifying conversion``, ``using existing layer …`` / ``creating new
  layer …``, ``writing manifest``, ``success``. ``stream: false`` answers once.
- ``POST /api/show`` (server/routes.go ``GetModelInfo``, server/images.go
  ``Model.String``, parser/parser.go ``Command.String`` / ``quote``): the
  Modelfile has three comment lines, ``FROM <blob path>``, ``TEMPLATE`` (always;
  ``{{ .Prompt }}``, template/template.go ``DefaultTemplate``, when the model has
  none), ``SYSTEM``, ``RENDERER``, ``PARSER``, ``PARAMETER`` lines in Go's random
  map order with values printed by ``%v`` of the JSON-decoded value (float64:
  ``1.048576e+06``), ``LICENSE``, ``MESSAGE``; ``parameters`` is ``%-30s %#v``
  lines; ``requires`` comes from the config.
- ``GET /api/tags``, ``DELETE /api/delete``, ``POST /api/copy``.
- ``POST /api/push``: errors come inside the stream; a namespace not in
  ``allowed_namespaces`` (``library`` never) gets the registry's
  ``unauthorized: access denied`` (server/images.go ``errUnauthorized``).
- Names: ``[host/][namespace/]model[:tag]`` with Ollama's part rules.

Fault switches (attributes of :class:`Faults`): ``fail_create`` (answer that
many creates with 500), ``drop_upload_after`` / ``drop_upload_times`` (cut the
connection after that many body bytes of a blob upload), ``corrupt_uploads``
(flip a byte of every upload, so its digest never matches), ``reject_status``
(every API request answered with that status), ``echo_authorization`` (error
bodies quote the request's Authorization header),
``upload_bytes_per_second`` (a slow link, so an upload can be interrupted),
``prune_after_upload`` (a stored blob is gone again, as when Ollama restarts
and prunes blobs no manifest uses).

Run it by hand: ``python tests/ollama_fake.py --root DIR [--port N]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import random
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "0.33.0-rc2"
DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")  # manifest/paths.go BlobsPath
COMPATIBILITY_PREFIXES = ("a.", "mm.", "mtp.", "s.", "v.")  # server/create.go isEmbeddedCompatibilityTensor
# server/create.go createModel: renderer and parser set from the architecture when not sent
AUTO_RENDERERS = {"gemma4": "gemma4", "laguna": "laguna", "nemotron_h": "nemotron-3-nano",
                  "nemotron_h_moe": "nemotron-3-nano", "nemotron_h_omni": "nemotron-3-nano"}
DEFAULT_TEMPLATE = "{{ .Prompt }}"  # template/template.go DefaultTemplate
MT = "application/vnd.ollama.image."
CONFIG_MT = "application/vnd.docker.container.image.v1+json"
MANIFEST_MT = "application/vnd.docker.distribution.manifest.v2+json"
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
              23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
              30: "IQ4_XS", 31: "IQ1_M", 32: "BF16"}


# ------------------------------------------------------------------ names

_PART = {"host": (350, "_.:-"), "namespace": (80, "_-"), "model": (80, "_.-"), "tag": (80, "_.-")}


def _valid_part(kind: str, s: str) -> bool:
    limit, extra = _PART[kind]
    if not 1 <= len(s) <= limit or not (s[0].isascii() and (s[0].isalnum() or s[0] == "_")):
        return False
    return all(c.isascii() and (c.isalnum() or c in extra) for c in s[1:])


def parse_name(s: str):
    """(host, namespace, model, tag) with defaults, or None when Ollama would refuse the name."""
    if not isinstance(s, str) or not s:
        return None
    parts = {}
    if s.rfind(":") > s.rfind("/"):
        s, _, parts["tag"] = s.rpartition(":")
    segs = s.split("/")
    if len(segs) > 3:
        segs = ["/".join(segs[:-2]), segs[-2], segs[-1]]
    if len(segs) == 3:
        host = segs[0].split("://", 1)[-1]
        parts.update(host=host, namespace=segs[1], model=segs[2])
    elif len(segs) == 2:
        parts.update(namespace=segs[0], model=segs[1])
    else:
        parts["model"] = segs[0]
    for kind, value in parts.items():
        if not _valid_part(kind, value):
            return None
    return (parts.get("host", "registry.ollama.ai"), parts.get("namespace", "library"), parts["model"],
            parts.get("tag", "latest"))


def short_name(n) -> str:
    host, ns, model, tag = n
    if host != "registry.ollama.ai":
        return f"{host}/{ns}/{model}:{tag}"
    return f"{model}:{tag}" if ns == "library" else f"{ns}/{model}:{tag}"


# ------------------------------------------------------------------ GGUF metadata

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_metadata(path: Path) -> dict:
    """Architecture, file type and parameter count from a GGUF header; raises ValueError."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:4] not in (b"GGUF",):
            raise ValueError("invalid file magic")
        version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")

        def read(n):
            b = f.read(n)
            if len(b) != n:
                raise ValueError("unexpected end of GGUF header")
            return b

        def string():
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", "replace")

        def value(t):
            if t in _SCALAR:
                fmt = _SCALAR[t]
                return struct.unpack(fmt, read(struct.calcsize(fmt)))[0]
            if t == 8:
                return string()
            if t == 9:
                et, count = struct.unpack("<IQ", read(12))
                if et in _SCALAR:
                    f.seek(struct.calcsize(_SCALAR[et]) * count, 1)
                    return None
                for _ in range(count):
                    value(et)
                return None
            raise ValueError(f"unknown GGUF value type {t}")

        kv = {}
        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", read(4))
            kv[key] = value(t)
        params = 0
        names = []
        for _ in range(n_tensors):
            names.append(string())
            (nd,) = struct.unpack("<I", read(4))
            dims = struct.unpack(f"<{nd}Q", read(8 * nd))
            read(12)
            n = 1
            for d in dims:
                n *= d
            params += n
    arch = kv.get("general.architecture") or "unknown"
    return {"architecture": arch, "file_type": FILE_TYPES.get(kv.get("general.file_type"), "unknown"),
            "parameter_count": params, "context_length": kv.get(f"{arch}.context_length"),
            "embedding_length": kv.get(f"{arch}.embedding_length"),
            "chat_template": kv.get("tokenizer.chat_template") or "", "tensor_names": names}


def human_number(n: int) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}".rstrip("0").rstrip(".") + unit
    return str(n)


def go_quote(s: str) -> str:
    """parser/parser.go ``quote``, used when Ollama writes a Modelfile back out."""
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        return f'"""{s}"""' if '"' in s else f'"{s}"'
    return s


def go_float(v: float) -> str:
    """Go's ``%v`` (and ``%#v``) of a float64: the shortest digits, ``%e`` form when the exponent
    is below -4 or at least 6 (strconv ``FormatFloat(v, 'g', -1, 64)``)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    sign = "-" if v < 0 else ""
    digits, exp = _shortest(abs(v))
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[:exp + 1]}.{digits[exp + 1:]}"


def _shortest(v: float) -> tuple[str, int]:
    """(significant digits, decimal exponent of the first) of Python's shortest repr of ``v``."""
    mant, _, e = f"{v!r}".lower().partition("e")
    whole, _, frac = mant.partition(".")
    exp = int(e or 0) + len(whole) - 1
    digits = (whole + frac).lstrip("0")
    exp -= len(whole + frac) - len((whole + frac).lstrip("0"))
    return digits.rstrip("0") or "0", exp


def go_v(v) -> str:
    """``fmt.Sprintf("%v", v)`` of a JSON-decoded value (numbers are float64)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return go_float(float(v))
    return str(v)


def go_sharp_v(v) -> str:
    """``fmt.Sprintf("%#v", v)`` of a JSON-decoded value: strings Go-quoted."""
    if isinstance(v, str):
        return go_string(v)
    return go_v(v)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_string(s: str) -> str:
    """strconv.Quote: Go escapes, other control characters as \\xNN, printable Unicode kept."""
    out = []
    for c in s:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def levenshtein(a: str, b: str) -> int:
    """Edit distance, as github.com/agnivade/levenshtein (template/template.go ``Named``) computes it."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass
class KnownTemplate:
    """One entry of the table ``detectChatTemplate`` matches against (template/index.json in Ollama)."""

    name: str
    jinja: str  # the chat template it recognises
    template: str  # the Go template it stores
    stop: list[str] | None = None  # its parameters


# ------------------------------------------------------------------ server state

@dataclass
class Faults:
    fail_create: int = 0
    drop_upload_after: int | None = None
    drop_upload_times: int = 0
    corrupt_uploads: bool = False
    upload_bytes_per_second: float | None = None  # a slow link: blob uploads take time
    prune_after_upload: int = 0  # that many stored uploads vanish at once, as after a restart's blob pruning
    reject_status: int | None = None  # answer every API request with this status (401, 500 …)
    echo_authorization: bool = False  # error bodies quote the request's Authorization header, as careless servers do
    copy_writes_other_bytes: bool = False  # the server's llama-quantize COPY output differs from gl's (another build)


class CreateError(Exception):
    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


@dataclass
class Store:
    root: Path
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    def blob(self, digest: str) -> Path:
        return self.blobs / digest.replace(":", "-", 1)  # manifest/paths.go BlobsPath keeps the case

    def manifest_path(self, n) -> Path:
        return self.manifests.joinpath(*n)

    def find_manifest(self, n) -> Path | None:
        p = self.manifest_path(n)
        if p.is_file():
            return p
        want = [x.lower() for x in n]
        for q in self.manifests.glob("*/*/*/*"):
            if [x.lower() for x in q.relative_to(self.manifests).parts] == want:
                return q
        return None

    def write_blob(self, data: bytes) -> tuple[str, bool]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob(digest)
        if path.exists():
            return digest, False
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix="sha256-", suffix="-partial")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return digest, True

    def write_manifest(self, n, manifest: dict) -> None:
        path = self.manifest_path(n)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
        os.replace(tmp, path)

    def all_manifests(self):
        if not self.manifests.is_dir():
            return
        for p in sorted(self.manifests.glob("*/*/*/*")):
            if p.is_file() and not p.name.startswith("."):
                yield tuple(p.relative_to(self.manifests).parts), p


class FakeOllama:
    def __init__(self, root: str | os.PathLike, llama_quantize: str | os.PathLike,
                 allowed_namespaces=("lab",), host: str = "127.0.0.1", port: int = 0,
                 templates: list[KnownTemplate] | tuple = ()):
        self.root = Path(root)
        self.llama_quantize = Path(llama_quantize)  # the real tool: create runs its COPY on every model GGUF
        self.templates = list(templates)  # what detectChatTemplate recognises (Ollama: template/index.json)
        self.version = VERSION
        self.store = Store(self.root / "models")
        self.registry = Store(self.root / "registry")
        self.allowed_namespaces = set(allowed_namespaces)
        self.faults = Faults()
        self.log: list[tuple[str, str, int]] = []
        self.auth_headers: list[str] = []
        self.store.blobs.mkdir(parents=True, exist_ok=True)
        self.store.manifests.mkdir(parents=True, exist_ok=True)
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeOllama":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-ollama", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # helpers for tests
    def requests(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str, int]]:
        return [r for r in self.log if (method is None or r[0] == method) and r[1].startswith(prefix)]

    def manifest(self, name: str) -> dict | None:
        n = parse_name(name)
        p = self.store.find_manifest(n) if n else None
        return json.loads(p.read_text()) if p else None

    def blob_files(self) -> list[str]:
        return sorted(p.name for p in self.store.blobs.iterdir())

    # ---------------------------------------------------------------- create
    def existing_name(self, n):
        """server/routes.go getExistingName: each part takes the case of a stored model's part, if any."""
        got = list(n)
        done = [False] * 4
        for have, _ in self.store.all_manifests():
            for i in range(4):
                if not done[i] and have[i].lower() == n[i].lower():
                    got[i], done[i] = have[i], True
        return tuple(got)

    def copy_with_llama_quantize(self, digest: str):
        """server/create.go copyLayerWithLlamaQuantize: (new digest, size); CreateError when it fails."""
        src = self.store.blob(digest)
        fd, tmp = tempfile.mkstemp(dir=self.store.blobs, prefix="COPY")
        os.close(fd)
        try:
            r = subprocess.run([str(self.llama_quantize), "--allow-requantize", str(src), tmp, "COPY"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
                raise CreateError("failed to validate GGUF with llama-quantize without compatibility patches: "
                                  f"llama-quantize failed: {tail[0]}")
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                while block := f.read(4 << 20):
                    h.update(block)
            if self.faults.copy_writes_other_bytes:
                with open(tmp, "ab") as f:
                    f.write(b"\0" * 32)
                h = hashlib.sha256(Path(tmp).read_bytes())
            new = "sha256:" + h.hexdigest()
            size = os.path.getsize(tmp)
            target = self.store.blob(new)
            if target.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
            return new, size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def detect_template(self, chat_template: str):
        """server/model.go detectChatTemplate with template/template.go Named: the closest known
        template, when its distance is below 100."""
        best, score = None, None
        for t in self.templates:
            d = levenshtein(chat_template, t.jinja)
            if score is None or d < score:
                best, score = t, d
        return best if score is not None and score < 100 else None

    def create_statuses(self, body: dict, n):
        """Yield status dicts; raise CreateError for a failure after streaming began."""
        files = body.get("files") or {}
        layers = []
        meta = None
        params = {}  # from a detected template, under what was sent
        config_extra = {k: body[k] for k in ("renderer", "parser", "requires") if body.get(k)}
        if body.get("from"):
            base = parse_name(body["from"])
            path = self.store.find_manifest(base) if base else None
            if path is None:
                raise CreateError(f"model '{body['from']}' not found", 404)
            base_manifest = json.loads(path.read_text())
            layers = [dict(layer) for layer in base_manifest["layers"]]
            cfg = json.loads(self.store.blob(base_manifest["config"]["digest"]).read_text())
            meta = {"architecture": cfg.get("model_family"), "file_type": cfg.get("file_type"),
                    "model_type": cfg.get("model_type")}
            for k in ("renderer", "parser", "requires"):
                if not config_extra.get(k) and cfg.get(k):
                    config_extra[k] = cfg[k]
            for layer in layers:
                if layer["mediaType"] == MT + "params":
                    params = json.loads(self.store.blob(layer["digest"]).read_text())
                yield {"status": f"using existing layer {layer['digest']}"}
        elif files:
            detected = []
            for name in sorted(files):
                digest = files[name]
                yield {"status": "parsing GGUF"}
                blob = self.store.blob(digest)
                if not DIGEST_RE.match(digest):
                    raise CreateError("invalid digest format")
                if not blob.is_file():
                    raise CreateError(f"open {blob}: no such file or directory")
                try:
                    meta = read_gguf_metadata(blob)
                except ValueError as e:
                    raise CreateError(f"{name}: {e}", 400) from None
                layers.append({"mediaType": MT + "model", "digest": digest.replace("-", ":", 1),
                               "size": blob.stat().st_size, "from": name})
                yield {"status": f"using existing layer {digest}"}
                known = self.detect_template(meta["chat_template"]) if meta["chat_template"] else None
                if known is not None:
                    detected.append(known)
            for known in detected:
                yield {"status": f"using autodetected template {known.name}"}
                layers.append(self._layer("template", known.template.encode()))
                if known.stop is not None:
                    params = {"stop": list(known.stop)}
            # createModel: every text-only model GGUF goes through llama-quantize COPY
            for layer in layers:
                if layer["mediaType"] != MT + "model":
                    continue
                if any(t.startswith(COMPATIBILITY_PREFIXES) for t in meta["tensor_names"]):
                    continue
                yield {"status": "validating GGUF model", "digest": "0000000000000000000",
                       "total": layer["size"], "completed": 0}
                new, size = self.copy_with_llama_quantize(layer["digest"])
                yield {"status": "verifying conversion"}
                layer.update(digest=new, size=size)
                layer.pop("from", None)
        else:
            raise CreateError("neither 'from' or 'files' was specified", 400)

        sent = dict(body.get("parameters") or {})
        arch = meta.get("architecture")
        if arch in AUTO_RENDERERS and not (config_extra.get("renderer") and config_extra.get("parser")):
            config_extra.setdefault("renderer", AUTO_RENDERERS[arch])
            config_extra.setdefault("parser", AUTO_RENDERERS[arch])
            if arch == "gemma4" and "stop" not in sent:
                sent["stop"] = ["<turn|>"]

        def add(kind: str, data: bytes):
            nonlocal layers
            layers = [x for x in layers if x["mediaType"] != MT + kind] if kind != "license" else layers
            layer = self._layer(kind, data)
            layers.append(layer)
            return {"status": f"{'creating new' if layer.pop('new') else 'using existing'} layer {layer['digest']}"}

        template = body.get("template")
        if template:
            if template.count("{{") != template.count("}}"):
                raise CreateError("template: unexpected EOF: unbalanced action delimiters", 400)
            yield add("template", template.encode())
        if body.get("system"):
            yield add("system", body["system"].encode())
        licenses = body.get("license")
        if licenses:
            for text in [licenses] if isinstance(licenses, str) else licenses:
                yield add("license", text.encode())
        merged = {**params, **sent}  # setParameters: what was sent wins over the stored parameters
        if merged:
            yield add("params", json.dumps(merged).encode())
        if body.get("messages"):
            yield add("messages", json.dumps(body["messages"]).encode())
        for layer in layers:
            layer.pop("new", None)
        model_type = meta.get("model_type") or human_number(meta.get("parameter_count") or 0)
        config = {"model_format": "gguf", "model_family": meta["architecture"],
                  "model_families": [meta["architecture"]], "model_type": model_type,
                  "file_type": meta["file_type"], **config_extra, "architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}
        cdigest, _ = self.store.write_blob(json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MT,
                    "config": {"mediaType": CONFIG_MT, "digest": cdigest,
                               "size": self.store.blob(cdigest).stat().st_size},
                    "layers": layers}
        yield {"status": "writing manifest"}
        with self.store.lock:
            self.store.write_manifest(n, manifest)
        yield {"status": "success"}

    def _layer(self, kind: str, data: bytes) -> dict:
        digest, new = self.store.write_blob(data)
        return {"mediaType": MT + kind, "digest": digest, "size": len(data), "new": new}

    # ---------------------------------------------------------------- show
    def show(self, n, path: Path) -> dict:
        """server/routes.go GetModelInfo over server/images.go GetModel and Model.String."""
        manifest = json.loads(path.read_text())
        config = json.loads(self.store.blob(manifest["config"]["digest"]).read_text())
        text = {"template": DEFAULT_TEMPLATE}
        params = {}
        licenses = []
        messages = []
        model_path = None
        for layer in manifest["layers"]:
            kind = layer["mediaType"].removeprefix(MT)
            blob = self.store.blob(layer["digest"])
            if kind == "model":
                model_path = str(blob)
            elif kind in ("template", "system"):
                text[kind] = blob.read_text()
            elif kind == "params":
                params = json.loads(blob.read_text())
            elif kind == "license":
                licenses.append(blob.read_text())
            elif kind == "messages":
                messages = json.loads(blob.read_text())
        items = list(params.items())
        random.shuffle(items)  # m.Options is a Go map: its order changes from call to call
        lines = [f"FROM {model_path}", f"TEMPLATE {go_quote(text['template'])}"]
        if text.get("system"):
            lines.append(f"SYSTEM {go_quote(text['system'])}")
        if config.get("renderer"):
            lines.append(f"RENDERER {go_quote(config['renderer'])}")
        if config.get("parser"):
            lines.append(f"PARSER {go_quote(config['parser'])}")
        for k, v in items:
            for item in v if isinstance(v, list) else [v]:
                lines.append(f"PARAMETER {k} {go_quote(go_v(item))}")
        for lic in licenses:
            lines.append(f"LICENSE {go_quote(lic)}")
        for m in messages:
            lines.append(f"MESSAGE {m['role']} {go_quote(m['content'])}")
        modelfile = ("# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, "
                     f"replace FROM with:\n# FROM {short_name(n)}\n\n" + "\n".join(lines) + "\n")
        param_lines = []
        for k, v in items:
            for item in v if isinstance(v, list) else [v]:
                param_lines.append(f"{k:<30} {go_sharp_v(item)}")
        arch = config.get("model_family")
        out = {"license": "\n".join(licenses), "modelfile": modelfile,
               "parameters": "\n".join(param_lines), "template": text["template"],
               "system": text.get("system", ""),
               "details": {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
                           "parameter_size": config.get("model_type"),
                           "quantization_level": config.get("file_type")},
               "model_info": {"general.architecture": arch},
               "capabilities": ["completion"],
               "modified_at": _mtime(path)}
        if config.get("requires"):
            out["requires"] = config["requires"]
        return {k: v for k, v in out.items() if v != ""}  # api.ShowResponse: omitempty


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()


def _handler_for(server: FakeOllama):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ollama-fake"

        def log_message(self, *args):  # quiet
            pass

        # ----------------------------------------------------------- plumbing
        def _record(self, status: int):
            server.log.append((self.command, self.path, status))

        def _send(self, status: int, body=None, *, content_type="application/json"):
            data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self._record(status)

        def _error(self, status: int, message: str):
            if server.faults.echo_authorization:
                message += f" (request authorization: {self.headers.get('Authorization')})"
            self._send(status, {"error": message})

        def _rejected(self) -> bool:
            """Answer with the reject_status fault (the body read and dropped); True when it did."""
            if server.faults.reject_status is None or not self.path.startswith("/api/"):
                return False
            if self.command in ("POST", "DELETE"):
                for _ in self._body_chunks():
                    pass
            self._error(server.faults.reject_status, "unauthorized" if server.faults.reject_status == 401
                        else "fake fault: internal server error")
            return True

        def _body_chunks(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size_line = self.rfile.readline()
                    if not size_line:
                        raise ConnectionError("connection closed inside a chunked body")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    left = size
                    while left:
                        block = self.rfile.read(min(left, 4 << 20))
                        if not block:
                            raise ConnectionError("connection closed inside a chunk")
                        left -= len(block)
                        yield block
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left:
                    block = self.rfile.read(min(left, 4 << 20))
                    if not block:
                        raise ConnectionError("connection closed inside the body")
                    left -= len(block)
                    yield block

        def _json_body(self):
            raw = b"".join(self._body_chunks())
            if not raw:
                self._error(400, "missing request body")
                return None
            try:
                body = json.loads(raw)
            except ValueError as e:
                self._error(400, str(e))
                return None
            if not isinstance(body, dict):
                self._error(400, "request body must be a JSON object")
                return None
            return body

        def _stream_start(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._record(200)

        def _stream_line(self, obj):
            data = json.dumps(obj).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream_end(self):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _drop(self):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._record(0)

        # ----------------------------------------------------------- routing
        def do_GET(self):
            if self.headers.get("Authorization"):
                server.auth_headers.append(self.headers["Authorization"])
            if self._rejected():
                return
            if self.path == "/":
                return self._send(200, b"Ollama is running", content_type="text/plain; charset=utf-8")
            if self.path == "/api/version":
                return self._send(200, {"version": server.version})
            if self.path == "/api/tags":
                return self._tags()
            self._send(404, b"404 page not found", content_type="text/plain")

        def do_HEAD(self):
            if server.faults.reject_status is not None:
                return self._send(server.faults.reject_status)
            m = re.fullmatch(r"/api/blobs/(.+)", self.path)
            if not m:
                return self._send(404)
            if not DIGEST_RE.match(m.group(1)):  # manifest/paths.go BlobsPath
                return self._error(400, "invalid digest format")
            if not server.store.blob(m.group(1)).is_file():
                return self._error(404, f"blob {json.dumps(m.group(1))} not found")
            self._send(200)

        def do_POST(self):
            if self.headers.get("Authorization"):
                server.auth_headers.append(self.headers["Authorization"])
            if self._rejected():
                return
            m = re.fullmatch(r"/api/blobs/(.+)", self.path)
            if m:
                return self._upload(m.group(1))
            routes = {"/api/create": self._create, "/api/show": self._show, "/api/copy": self._copy,
                      "/api/push": self._push}
            if self.path not in routes:
                return self._send(404, b"404 page not found", content_type="text/plain")
            body = self._json_body()
            if body is None:
                return
            try:
                routes[self.path](body)
            except OSError as e:  # the store is damaged: answer as a server error, as Ollama does
                self._error(500, str(e))

        def do_DELETE(self):
            if self.path != "/api/delete":
                return self._send(404, b"404 page not found", content_type="text/plain")
            body = self._json_body()
            if body is None:
                return
            n = parse_name(body.get("model") or body.get("name") or "")
            path = server.store.find_manifest(n) if n else None
            if path is None:
                return self._error(404, f"model '{body.get('model')}' not found")
            path.unlink()
            self._send(200)

        # ----------------------------------------------------------- handlers
        def _upload(self, digest: str):
            if not DIGEST_RE.match(digest):
                return self._error(400, "invalid digest format")
            target = server.store.blob(digest)
            if target.is_file():
                for _ in self._body_chunks():  # read and drop the body so the connection stays usable
                    pass
                return self._send(200)
            faults = server.faults
            drop_at = None
            if faults.drop_upload_after is not None and faults.drop_upload_times > 0:
                faults.drop_upload_times -= 1
                drop_at = faults.drop_upload_after
            h = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(dir=server.store.blobs, prefix="sha256-", suffix="-partial")
            received = 0
            try:
                with os.fdopen(fd, "wb") as f:
                    for block in self._body_chunks():
                        if drop_at is not None and received + len(block) >= drop_at:
                            f.close()
                            os.unlink(tmp)  # a dropped upload leaves nothing behind
                            self._drop()
                            return
                        if faults.corrupt_uploads and received == 0 and block:
                            block = bytes([block[0] ^ 0xFF]) + block[1:]
                        received += len(block)
                        h.update(block)
                        f.write(block)
                        f.flush()
                        if faults.upload_bytes_per_second:
                            time.sleep(len(block) / faults.upload_bytes_per_second)
                got = "sha256:" + h.hexdigest()
                if got != digest:  # server/routes.go CreateBlobHandler compares the path's digest literally
                    return self._error(400, f"digest mismatch, expected {go_string(digest)}, got {go_string(got)}")
                os.replace(tmp, target)
                if faults.prune_after_upload > 0:
                    faults.prune_after_upload -= 1
                    target.unlink()
                self._send(201)
            except (ConnectionError, OSError):
                self.close_connection = True
                self._record(-1)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        def _create(self, body: dict):
            n = parse_name(body.get("model") or body.get("name") or "")
            if n is None:
                return self._error(400, "invalid model name")
            if server.faults.fail_create > 0:
                server.faults.fail_create -= 1
                return self._error(500, "fake fault: the server failed to create the model")
            for name, digest in (body.get("files") or {}).items():
                if name in (".", "") or name.startswith("/") or ".." in name.split("/") or re.search(r"[\\:]", name):
                    return self._error(400, f"file path must be relative: {name}")
                if not digest:  # server/create.go CreateHandler; other bad digests fail inside the stream
                    return self._error(400, "invalid digest format")
            if body.get("quantize") and body.get("files"):
                return self._error(400, "create-time quantization is only supported for safetensors imports; "
                                        "quantize GGUF models with llama.cpp tools before importing")
            statuses = server.create_statuses(body, server.existing_name(n))
            if body.get("stream") is False:
                last = None
                try:
                    for s in statuses:
                        last = s
                except CreateError as e:
                    return self._error(e.status, str(e))
                return self._send(200, last)
            self._stream_start()
            try:
                for s in statuses:
                    self._stream_line(s)
            except CreateError as e:
                self._stream_line({"error": str(e)})
            self._stream_end()

        def _tags(self):
            models = []
            for n, path in server.store.all_manifests():
                manifest = json.loads(path.read_text())
                config = json.loads(server.store.blob(manifest["config"]["digest"]).read_text())
                size = sum(x["size"] for x in manifest["layers"]) + manifest["config"]["size"]
                models.append({"name": short_name(n), "model": short_name(n), "modified_at": _mtime(path),
                               "size": size, "digest": hashlib.sha256(path.read_bytes()).hexdigest(),
                               "details": {"parent_model": "", "format": "gguf",
                                           "family": config.get("model_family"),
                                           "families": config.get("model_families"),
                                           "parameter_size": config.get("model_type"),
                                           "quantization_level": config.get("file_type")}})
            self._send(200, {"models": models})

        def _show(self, body: dict):
            raw = body.get("model") or body.get("name") or ""
            n = parse_name(raw)
            path = server.store.find_manifest(n) if n else None
            if path is None:
                return self._error(404, f"model '{raw}' not found")
            self._send(200, server.show(server.existing_name(n), path))

        def _copy(self, body: dict):
            src, dst = parse_name(body.get("source") or ""), parse_name(body.get("destination") or "")
            if dst is None:
                return self._error(400, f"invalid destination name: {body.get('destination')!r}")
            path = server.store.find_manifest(src) if src else None
            if path is None:
                return self._error(404, f"model '{body.get('source')}' not found")
            with server.store.lock:
                server.store.write_manifest(dst, json.loads(path.read_text()))
            self._send(200)

        def _push(self, body: dict):
            raw = body.get("model") or body.get("name") or ""
            n = parse_name(raw)
            if n is None:
                return self._error(400, "invalid model name")
            stream = body.get("stream") is not False
            path = server.store.find_manifest(n)

            def statuses():
                yield {"status": "retrieving manifest"}
                if path is None:
                    raise CreateError(f"model '{raw}' not found", 404)
                if n[1] == "library" or n[1] not in server.allowed_namespaces:
                    raise CreateError("unauthorized: access denied", 401)  # server/images.go errUnauthorized
                manifest = json.loads(path.read_text())
                for layer in [manifest["config"], *manifest["layers"]]:
                    blob = server.store.blob(layer["digest"])
                    dest = server.registry.blob(layer["digest"])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if not dest.exists():
                        shutil.copyfile(blob, dest)
                    yield {"status": f"pushing {layer['digest'][7:19]}", "digest": layer["digest"],
                           "total": layer["size"], "completed": layer["size"]}
                yield {"status": "pushing manifest"}
                server.registry.write_manifest(n, manifest)
                yield {"status": "success"}

            if not stream:
                last = None
                try:
                    for s in statuses():
                        last = s
                except CreateError as e:
                    return self._error(e.status, str(e))
                return self._send(200, last)
            self._stream_start()
            try:
                for s in statuses():
                    self._stream_line(s)
            except CreateError as e:
                self._stream_line({"error": str(e)})
            self._stream_end()

    return Handler


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--allow", action="append", default=["lab"], help="namespace that may be pushed")
    args = ap.parse_args()
    from gl_plugins.toolchain.llamacpp import find_tool

    fake = FakeOllama(args.root, find_tool("llama-quantize"), allowed_namespaces=args.allow, port=args.port).start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
