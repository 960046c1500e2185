"""A local stand-in for the Ollama server, following the API in FACTS.md (the Ollama section).

It is the only stand-in the test suite uses: gl talks to it through the
official ``ollama`` client exactly as it would talk to a real server. It keeps
its own store like ``OLLAMA_MODELS``: ``blobs/sha256-<hex>`` and
``manifests/<host>/<namespace>/<model>/<tag>`` (schemaVersion 2, Ollama's
media types, a config blob with model_format/model_family/model_type/
file_type). Pushes land in a separate ``registry/`` folder.

Behaviour, as documented for Ollama:

- ``HEAD /api/blobs/sha256:<hex>``: 200 present, 404 absent, 400 bad digest.
- ``POST /api/blobs/sha256:<hex>``: 201 created, 200 when it already exists
  (the body is not read), 400 ``digest mismatch``; the bytes go to a
  temporary file and become a blob only after the digest checks out.
- ``POST /api/create``: errors found before streaming are an HTTP status with
  ``{"error": …}``; afterwards a ``{"error": …}`` line with status 200.
  Statuses: ``parsing GGUF``, ``using existing layer …`` / ``creating new
  layer …``, ``writing manifest``, ``success``. ``stream: false`` answers once.
- ``GET /api/tags``, ``POST /api/show``, ``DELETE /api/delete``,
  ``POST /api/copy``, ``POST /api/push`` (only namespaces in
  ``allowed_namespaces`` may be pushed; ``library`` never).
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
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "0.33.0"
DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
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
        for _ in range(n_tensors):
            string()
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
            "embedding_length": kv.get(f"{arch}.embedding_length")}


def human_number(n: int) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}".rstrip("0").rstrip(".") + unit
    return str(n)


def go_quote(s: str) -> str:
    """Ollama's parser.quote, used when it writes a Modelfile back out."""
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        return f'"""{s}"""' if '"' in s else f'"{s}"'
    return s


def go_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


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
        return self.blobs / digest.replace(":", "-", 1).lower()

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
    def __init__(self, root: str | os.PathLike, allowed_namespaces=("lab",), host: str = "127.0.0.1",
                 port: int = 0):
        self.root = Path(root)
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
    def create_statuses(self, body: dict, n):
        """Yield status dicts; raise CreateError for a failure after streaming began."""
        files = body.get("files") or {}
        layers = []
        meta = None
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
            for layer in layers:
                yield {"status": f"using existing layer {layer['digest']}"}
        elif files:
            for name in sorted(files):
                digest = files[name]
                yield {"status": "parsing GGUF"}
                blob = self.store.blob(digest)
                if not blob.is_file():
                    raise CreateError(f"open {blob}: no such file or directory")
                try:
                    meta = read_gguf_metadata(blob)
                except ValueError as e:
                    raise CreateError(f"{name}: {e}", 400) from None
                layers.append({"mediaType": MT + "model", "digest": digest.replace("-", ":", 1),
                               "size": blob.stat().st_size, "from": name})
                yield {"status": f"using existing layer {digest}"}
        else:
            raise CreateError("neither 'from' or 'files' was specified", 400)

        def add(kind: str, data: bytes):
            nonlocal layers
            layers = [x for x in layers if x["mediaType"] != MT + kind] if kind != "license" else layers
            digest, new = self.store.write_blob(data)
            layers.append({"mediaType": MT + kind, "digest": digest, "size": len(data)})
            return {"status": f"{'creating new' if new else 'using existing'} layer {digest}"}

        template = body.get("template")
        if template is not None:
            if template.count("{{") != template.count("}}"):
                raise CreateError("template: unexpected EOF: unbalanced action delimiters", 400)
            yield add("template", template.encode())
        if body.get("system") is not None:
            yield add("system", body["system"].encode())
        if body.get("parameters"):
            yield add("params", json.dumps(body["parameters"], sort_keys=True).encode())
        licenses = body.get("license")
        if licenses:
            layers = [x for x in layers if x["mediaType"] != MT + "license"]
            for text in [licenses] if isinstance(licenses, str) else licenses:
                yield add("license", text.encode())
        if body.get("messages"):
            yield add("messages", json.dumps(body["messages"]).encode())
        model_type = meta.get("model_type") or human_number(meta.get("parameter_count") or 0)
        config = {"model_format": "gguf", "model_family": meta["architecture"],
                  "model_families": [meta["architecture"]], "model_type": model_type,
                  "file_type": meta["file_type"], "architecture": "amd64", "os": "linux",
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

    # ---------------------------------------------------------------- show
    def show(self, n, path: Path) -> dict:
        manifest = json.loads(path.read_text())
        config = json.loads(self.store.blob(manifest["config"]["digest"]).read_text())
        text = {}
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
        lines = [f"FROM {model_path}"]
        if "template" in text:
            lines.append(f"TEMPLATE {go_quote(text['template'])}")
        if "system" in text:
            lines.append(f"SYSTEM {go_quote(text['system'])}")
        for k, v in params.items():
            for item in v if isinstance(v, list) else [v]:
                lines.append(f"PARAMETER {k} {go_quote(go_value(item))}")
        for lic in licenses:
            lines.append(f"LICENSE {go_quote(lic)}")
        for m in messages:
            lines.append(f"MESSAGE {m['role']} {go_quote(m['content'])}")
        modelfile = ("# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, "
                     f"replace FROM with:\n# FROM {short_name(n)}\n\n" + "\n".join(lines) + "\n")
        param_lines = []
        for k, v in params.items():
            for item in v if isinstance(v, list) else [v]:
                param_lines.append(f"{k:<30} {json.dumps(item) if isinstance(item, str) else go_value(item)}")
        arch = config.get("model_family")
        return {"license": "\n".join(licenses) or None, "modelfile": modelfile,
                "parameters": "\n".join(param_lines) or None, "template": text.get("template"),
                "system": text.get("system"),
                "details": {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
                            "parameter_size": config.get("model_type"),
                            "quantization_level": config.get("file_type")},
                "model_info": {"general.architecture": arch},
                "capabilities": ["completion"],
                "modified_at": _mtime(path)}


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
                return self._send(200, {"version": VERSION})
            if self.path == "/api/tags":
                return self._tags()
            self._send(404, b"404 page not found", content_type="text/plain")

        def do_HEAD(self):
            if server.faults.reject_status is not None:
                return self._send(server.faults.reject_status)
            m = re.fullmatch(r"/api/blobs/(.+)", self.path)
            if not m:
                return self._send(404)
            if not DIGEST_RE.match(m.group(1)):
                return self._send(400)
            self._send(200 if server.store.blob(m.group(1)).is_file() else 404)

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
                if got != digest.replace("-", ":", 1).lower():
                    return self._error(400, f"digest mismatch, expected {digest!r}, got {got!r}")
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
                if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                    return self._error(400, f"invalid digest for {name}: invalid digest format")
            if body.get("quantize") and body.get("files"):
                return self._error(400, "create-time quantization is only supported for safetensors imports; "
                                        "quantize GGUF models with llama.cpp tools before importing")
            statuses = server.create_statuses(body, n)
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
            self._send(200, server.show(n, path))

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
                    raise CreateError("unauthorized: you are not authorized to push to this namespace, "
                                      "create the model under a namespace you own", 401)
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
    fake = FakeOllama(args.root, allowed_namespaces=args.allow, port=args.port).start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
