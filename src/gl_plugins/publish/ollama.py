"""The ``ollama`` publisher: one blob upload, one create, through the official ``ollama`` client.

Steps: read the server's version (``/api/version``); when the server rewrites
GGUFs at create (0.30.0-rc16 on), make the blob canonical first with the same
``llama-quantize COPY`` (publish/canonical.py); HEAD the blob and upload it
only when the server lacks it (streamed from disk with a progress bar, then
its throughput); compare the model the server already has under that name
(``show``) and create it only when something differs, and only after a HEAD
shows the server still holds the whole, digest-checked blob; confirm with
``show`` and ``list``; with ``--push`` copy it to ``namespace/model:tag`` and
push that. A create that needs fields the client cannot send (renderer,
parser, requires) is posted with ``requests``. Transient errors (connection
trouble, 5xx) are retried with backoff inside ``retry_seconds``; a digest
mismatch makes gl re-hash the file once and start over.

What the server shows is compared as Ollama prints it (server/images.go
``Model.String``, server/routes.go ``GetModelInfo``): numbers are Go's ``%v``
of float64 (``num_ctx 1048576`` shows as ``1.048576e+06``) and are compared
as numbers; PARAMETER lines come in random order and are compared per name
(``stop`` in order); a model without a template shows ``TEMPLATE {{ .Prompt }}``;
a stop, a template, a renderer or a parser the server added itself (gemma4
defaults in server/create.go ``createModel``, ``detectChatTemplate`` in
server/model.go) is accepted when gl sent none.
"""

from __future__ import annotations

import json
import re
import time

from gl_plugins import digests
from gl_plugins.errors import GLError
from gl_plugins.hookspecs import hookimpl
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.publish import canonical
from gl_plugins.publish.chat_format import refuse_unfit_server
from gl_plugins.publish.prepare import PublishRequest, PublishResult
from gl_plugins.publish.retry import describe, with_retry
from gl_plugins.publish.server import COPY_REWRITE, fetch_version
from gl_plugins.redaction import redact

CHUNK = 4 << 20
DIGEST_IN_PATH = re.compile(r"sha256[-:]([0-9a-f]{64})")
DEFAULT_TEMPLATE = "{{ .Prompt }}"  # template.DefaultTemplate: what show prints for a model without one
CLIENT_CREATE_FIELDS = {"files", "template", "system", "license", "parameters", "messages", "from", "adapters"}
RAW_CREATE_FIELDS = {"renderer", "parser", "requires"}  # api.CreateRequest has them; ollama-python 0.6 does not


class DigestMismatch(Exception):
    pass


def _client(options, timeout=None):
    import httpx
    import ollama

    t = timeout or httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)
    return ollama.Client(host=options.host_url(), timeout=t)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _number(value):
    """A shown or sent parameter value as a comparable number, when it is one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def shown_parameters(mf: mfmod.Modelfile) -> dict:
    """The PARAMETERs of ``ollama show``'s Modelfile, typed for comparison.

    Numbers are read as numbers whatever their spelling (``1.048576e+06`` for an int),
    booleans as booleans, ``stop`` as a list in order, anything else as text.
    """
    out: dict = {}
    for c in mf.parameter_commands():
        if c.key in mfmod.LIST_PARAMETERS:
            out.setdefault(c.key, []).append(c.value)
            continue
        value = c.value
        if c.key in mfmod.INT_PARAMETERS or c.key in mfmod.FLOAT_PARAMETERS:
            try:
                value = float(value)
            except ValueError:
                pass
        elif c.key in mfmod.BOOL_PARAMETERS and value in ("true", "false"):
            value = value == "true"
        out[c.key] = value
    return out


def sent_parameters(params: dict | None) -> dict:
    return {k: [str(x) for x in v] if isinstance(v, list) else _number(v) for k, v in (params or {}).items()}


def _shown_digest(mf: mfmod.Modelfile) -> str | None:
    m = DIGEST_IN_PATH.search(mf.from_ or "")
    return m.group(1) if m else None


# renderer/parser create sets itself for these architectures when none is sent (server/create.go createModel)
AUTO_RENDERERS = {"gemma4": "gemma4", "laguna": "laguna", "nemotron_h": "nemotron-3-nano",
                  "nemotron_h_moe": "nemotron-3-nano", "nemotron_h_omni": "nemotron-3-nano"}


class OllamaPublisher:
    name = "ollama"
    description = "Create the model on an Ollama server (official client): upload once, create, confirm, push."

    def available(self, options) -> str | None:
        import httpx
        import ollama

        client = _client(options, timeout=httpx.Timeout(5.0))
        try:
            client.list()
            options.server_version = fetch_version(client._client)
        except ollama.ResponseError as e:
            return f"the server at {options.host_url()} answered {e.status_code} to /api/tags ({e.error})"
        except (ConnectionError, httpx.TransportError) as e:
            return f"no Ollama server answers at {options.host_url()} ({describe(e)})"
        finally:
            client.close()
        return None

    # ------------------------------------------------------------ the blob
    def _canonical(self, req: PublishRequest, result: PublishResult) -> None:
        """Upload what the server will store: the GGUF after its own ``llama-quantize COPY``."""
        version = req.options.server_version
        if version is not None and not version.rewrites_gguf:
            result.actions.append(f"Ollama {version} stores the GGUF as uploaded (the llama-quantize COPY at "
                                  f"create starts at {COPY_REWRITE})")
            return
        if not canonical.rewritten_by_server(req.gguf):
            result.actions.append(f"{req.gguf.name} holds compatibility tensors (a., mm., mtp., s., v.), so the "
                                  f"server stores it as uploaded")
            return
        from gl_plugins.toolchain.llamacpp import find_tool

        if canonical.remembered(req.gguf, req.digest) is None and find_tool("llama-quantize", required=False) is None:
            result.actions.append(f"llama-quantize is not installed (gl toolchain install), so {req.gguf.name} "
                                  f"is uploaded as it is; the server's create rewrites it, and gl remembers the "
                                  f"digest it stores")
            return
        c = canonical.canonical(req.gguf, req.digest, echo=req.echo)
        took = f" in {c.seconds:.1f} s" if c.seconds else " (remembered)"
        if c.seconds:
            result.seconds["canonical"] = c.seconds
        if not c.changed:
            result.actions.append(f"{req.gguf.name} is canonical: llama-quantize --allow-requantize COPY gives it "
                                  f"back byte-identical{took}, as the server's create will")
            return
        result.actions.append(f"{req.gguf.name} is not canonical: llama-quantize --allow-requantize COPY rewrites "
                              f"it (sha256 {req.digest[:12]} -> {c.digest[:12]}){took}, as the server's create "
                              f"will; the rewritten copy is what gl uploads, so the server stores that digest")
        req.blob = c.path
        self._retarget(req, c.digest)
        req.size = c.path.stat().st_size

    def _blob_present(self, client, digest: str) -> bool:
        import httpx

        r = client._client.head(f"/api/blobs/sha256:{digest}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        if r.status_code == 400:
            raise GLError(f"the server refused the digest sha256:{digest} (400)")
        raise httpx.HTTPStatusError(f"HEAD blob answered {r.status_code}", request=r.request, response=r)

    def _upload(self, client, req: PublishRequest) -> float:
        import ollama
        from tqdm import tqdm

        path = req.upload_path
        started = time.monotonic()
        with tqdm(total=req.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {path.name}",
                  disable=None if req.options.progress else True, leave=False) as bar:
            def chunks():
                with open(path, "rb", buffering=0) as f:
                    while block := f.read(CHUNK):
                        yield block
                        bar.update(len(block))

            r = client._client.post(f"/api/blobs/sha256:{req.digest}", content=chunks(),
                                    headers={"Content-Length": str(req.size),
                                             "Content-Type": "application/octet-stream"})
        if r.status_code in (200, 201):
            return time.monotonic() - started
        text = _error_text(r)
        if r.status_code == 400 and "digest mismatch" in text:
            raise DigestMismatch(text)
        raise ollama.ResponseError(text, r.status_code)

    def _ensure_blob(self, client, req: PublishRequest, result: PublishResult, retry) -> None:
        for attempt in (1, 2):
            present = retry(lambda: self._blob_present(client, req.digest), "checking the blob")
            if present:
                result.actions.append(f"blob sha256:{req.digest[:12]} already on the server; nothing uploaded")
                return
            path = req.upload_path
            try:
                def once():
                    if self._blob_present(client, req.digest):  # a dropped attempt may have finished
                        return 0.0
                    return self._upload(client, req)

                seconds = retry(once, f"uploading {path.name}")
            except DigestMismatch as e:
                digests.forget(path)
                fresh = digests.sha256_file(path)
                if attempt == 2 or fresh == req.digest:
                    raise GLError(f"the server computed a different sha256 for {path} than gl sent "
                                  f"({redact(str(e)).strip()}); the file changed during the upload or the "
                                  f"connection corrupts data") from None
                req.echo(f"{path.name} changed since it was hashed; its sha256 is now {fresh[:12]}, "
                         f"uploading again")
                self._retarget(req, fresh)
                digests.remember(path, fresh)
                continue
            result.uploaded_bytes = req.size
            result.seconds["upload"] = seconds
            rate = req.size / seconds if seconds > 0 else float("inf")
            result.actions.append(f"uploaded {path.name}: {_human(req.size)} in {seconds:.1f} s "
                                  f"({_human(rate)}/s)")
            return

    def _verify_blob(self, client, req: PublishRequest, result: PublishResult, retry) -> None:
        """Create only from a blob the server holds whole (it stores a blob only once its sha256 checks).

        A server that restarted since the upload may have pruned it: upload it again, once.
        """
        def present():
            return retry(lambda: self._blob_present(client, req.digest), "checking the blob")

        if present():
            return
        req.echo(f"the server no longer holds blob sha256:{req.digest[:12]}; uploading it again")
        self._ensure_blob(client, req, result, retry)
        if not present():
            raise GLError(f"the server at {req.options.host_url()} does not keep blob sha256:{req.digest[:12]} "
                          f"({req.upload_path.name}) after storing it; no model was created from it")

    def _retarget(self, req: PublishRequest, digest: str) -> None:
        req.digest = digest
        req.create["files"] = {k: f"sha256:{digest}" for k in req.create.get("files", {})}

    # ------------------------------------------------------------ the model
    def _show(self, client, req: PublishRequest) -> dict | None:
        """``/api/show`` as JSON (it holds ``requires``, which the client's ShowResponse drops); None: no model."""
        import ollama

        r = client._client.post("/api/show", json={"model": req.name.short()})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise ollama.ResponseError(_error_text(r), r.status_code)
        try:
            return r.json()
        except ValueError:
            raise ollama.ResponseError(f"/api/show answered {r.text[:200]!r}, not JSON", 502) from None

    def _differences(self, shown: dict, req: PublishRequest, stored: set[str]) -> list[str]:
        """What the server's model lacks of what gl sends; empty when it holds exactly that.

        ``stored``: the digests the server may hold for this GGUF (gl's, or one a server was seen to store).
        """
        try:
            mf = mfmod.parse(shown.get("modelfile") or "", "ollama show", require_from=True)
        except GLError:
            return ["a Modelfile gl cannot read"]
        want = req.create
        out = []
        digest = _shown_digest(mf)
        if digest not in stored:
            out.append(f"blob sha256:{(digest or '?')[:12]}")
        template = mf.template
        if want.get("template"):
            if template != want["template"]:
                out.append("TEMPLATE")
        elif template not in (None, DEFAULT_TEMPLATE) and not req.has_chat_template:
            out.append("TEMPLATE")  # with a chat template in the GGUF, the server may have detected one
        if (mf.system or None) != (want.get("system") or None):
            out.append("SYSTEM")
        auto = AUTO_RENDERERS.get(req.architecture or "")
        for field in ("renderer", "parser"):
            have = mf.last(field.upper())
            sent = want.get(field)
            if have != (sent or auto):
                out.append(field.upper())
        if (shown.get("requires") or None) != (want.get("requires") or None):
            out.append("REQUIRES")
        if mf.licenses != list(want.get("license") or []):
            out.append("LICENSE")
        if mf.messages != list(want.get("messages") or []):
            out.append("MESSAGE")
        have_params = shown_parameters(mf)
        sent = sent_parameters(want.get("parameters"))
        for key in sorted(set(have_params) | set(sent)):
            if key in sent:
                if have_params.get(key) != sent[key]:
                    out.append(f"PARAMETER {key}")
            elif key != "stop":  # stop: gemma4's default, or a detected template's (detectChatTemplate)
                out.append(f"PARAMETER {key}")
        return out

    def _create(self, client, req: PublishRequest, result: PublishResult) -> None:
        import ollama

        body = {k: v for k, v in req.create.items() if k != "model"}
        unknown = set(body) - CLIENT_CREATE_FIELDS - RAW_CREATE_FIELDS
        if unknown:
            raise GLError(f"gl cannot send {', '.join(sorted(unknown))} in a create request; remove those "
                          f"instructions from the Modelfile")
        if set(body) & RAW_CREATE_FIELDS:
            # api.CreateRequest has renderer, parser and requires; the ollama client cannot send them
            with client._client.stream("POST", "/api/create",
                                       json={"model": req.name.short(), **body, "stream": True}) as r:
                if r.status_code != 200:
                    r.read()
                    raise ollama.ResponseError(_error_text(r), r.status_code)
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    status = json.loads(line)
                    if status.get("error"):
                        raise ollama.ResponseError(status["error"], -1)
                    if status.get("status"):
                        req.echo(f"  {status['status']}")
        else:
            if "from" in body:
                body["from_"] = body.pop("from")
            for status in client.create(req.name.short(), stream=True, **body):
                if status.status:
                    req.echo(f"  {status.status}")
        result.created = True
        result.actions.append(f"created {req.name.short()}")

    def _confirm(self, client, req: PublishRequest, result: PublishResult, source_digest: str) -> None:
        shown = self._show(client, req)
        if shown is None:
            raise GLError(f"after create, the server has no model {req.name.short()}")
        missing = self._differences(shown, req, {req.digest})
        if missing == [m for m in missing if m.startswith("blob ")] and missing:
            # the server's llama-quantize wrote other bytes than gl's: remember its digest for next time
            try:
                stored = _shown_digest(mfmod.parse(shown["modelfile"], "ollama show"))
            except GLError:
                stored = None
            if stored:
                canonical.remember_server_digest(source_digest, req.options.host_url(), stored)
                result.actions.append(f"the server stored sha256:{stored[:12]} for the uploaded "
                                      f"sha256:{req.digest[:12]} (its llama-quantize COPY wrote other bytes); "
                                      f"remembered, so a republish is recognised as unchanged")
                missing = []
        if missing:
            raise GLError(f"after create, the server's {req.name.short()} does not hold what was sent: "
                          f"{', '.join(missing)} differ")
        names = {m.model.lower() for m in client.list().models}
        if req.name.short().lower() not in names and req.name.full().lower() not in names:
            raise GLError(f"after create, {req.name.short()} is missing from the server's model list")

    def _push(self, client, req: PublishRequest, result: PublishResult, retry) -> None:
        import ollama

        target = req.name.with_namespace(req.options.namespace)
        if not target.same(req.name):
            retry(lambda: client.copy(req.name.short(), target.short()), f"copying to {target.short()}")
            result.actions.append(f"copied {req.name.short()} to {target.short()}")
        try:
            for status in client.push(target.short(), insecure=req.options.insecure, stream=True):
                if status.status:
                    req.echo(f"  {status.status}")
        except ollama.ResponseError as e:
            raise GLError(f"push of {target.short()} was refused: {redact(e.error)} (pushing needs the "
                          f"model under the namespace of the ollama.com account whose key this Ollama "
                          f"server uses)") from None
        result.pushed = target.short()
        result.actions.append(f"pushed {target.short()}")

    # ------------------------------------------------------------ entry point
    def publish(self, req: PublishRequest) -> PublishResult:
        import httpx
        import ollama

        opts = req.options
        result = PublishResult(self.name, req.name.short(), opts.host_url())
        if opts.dry_run:
            return self._plan(req, result)
        client = _client(opts)
        if opts.server_version is None:  # a request prepared without asking available() first
            opts.server_version = fetch_version(client._client)
            try:
                refuse_unfit_server(req.architecture, req.create.get("renderer"), opts.server_version)
            except GLError:
                client.close()
                raise
        source_digest = req.digest

        def retry(fn, what):
            return with_retry(fn, budget=opts.retry_seconds, what=what, echo=req.echo)

        step = f"uploading {req.gguf.name}"
        try:
            self._canonical(req, result)
            self._ensure_blob(client, req, result, retry)
            step = f"creating {req.name.short()}"
            stored = {req.digest, canonical.server_digest(source_digest, opts.host_url())} - {None}
            shown = retry(lambda: self._show(client, req), "reading the existing model")
            if shown is not None and not self._differences(shown, req, stored):
                result.unchanged = True
                result.actions.append(f"{req.name.short()} on the server already matches; nothing created")
            else:
                self._verify_blob(client, req, result, retry)
                retry(lambda: self._create(client, req, result), step)
                step = f"confirming {req.name.short()}"
                retry(lambda: self._confirm(client, req, result, source_digest), step)
                result.actions.append(f"confirmed {req.name.short()} with show and list")
            if opts.push:
                step = "pushing"
                self._push(client, req, result, retry)
        except (ollama.ResponseError, ConnectionError, httpx.TransportError, httpx.HTTPStatusError) as e:
            raise GLError(redact(f"{step} on {opts.host_url()} failed: {describe(e)}"
                                 + (f" (gave up after retrying for {opts.retry_seconds:g} s)"
                                    if opts.retry_seconds else ""))) from None
        finally:
            client.close()
        return result

    def _plan(self, req: PublishRequest, result: PublishResult) -> PublishResult:
        version = req.options.server_version
        note = None
        if (version is None or version.rewrites_gguf) and canonical.rewritten_by_server(req.gguf):
            known = canonical.remembered(req.gguf, req.digest)
            if known is not None and known.changed:
                result.actions.append(f"{req.gguf.name} is not canonical (remembered): gl would upload its "
                                      f"llama-quantize COPY, sha256 {known.digest[:12]}")
                req.blob, req.size = known.path, known.path.stat().st_size
                self._retarget(req, known.digest)
            elif known is None:
                note = (f"the digest of {req.gguf.name} after llama-quantize --allow-requantize COPY, which gl runs "
                        f"before uploading because the server runs it at create")
                result.actions.append(f"dry run: gl would first run llama-quantize COPY on {req.gguf.name}; the "
                                      f"blob requests name its own digest, sha256:{req.digest[:12]}, which stays "
                                      f"only if COPY gives the file back byte-identical")
        digest = f"sha256:{req.digest}"
        head = {"method": "HEAD", "path": f"/api/blobs/{digest}"}
        if note:
            head["digest"] = note
        raw = bool(set(req.create) & RAW_CREATE_FIELDS)
        create = {"method": "POST", "path": "/api/create", "body": {**req.create, "stream": True},
                  "when": "the server's model differs"}
        if raw:
            create["sent_by"] = "gl itself: the ollama client cannot send renderer, parser or requires"
        reqs = [{"method": "GET", "path": "/api/version"}, head,
                {"method": "POST", "path": f"/api/blobs/{digest}",
                 "body": f"<{req.size} bytes of {req.upload_path}>", "when": "the HEAD answers 404"},
                {"method": "POST", "path": "/api/show", "body": {"model": req.name.short()}},
                create,
                {"method": "POST", "path": "/api/show", "body": {"model": req.name.short()}},
                {"method": "GET", "path": "/api/tags"}]
        if req.options.push:
            target = req.name.with_namespace(req.options.namespace)
            if not target.same(req.name):
                reqs.append({"method": "POST", "path": "/api/copy",
                             "body": {"source": req.name.short(), "destination": target.short()}})
            reqs.append({"method": "POST", "path": "/api/push",
                         "body": {"model": target.short(), "insecure": req.options.insecure, "stream": True}})
        result.requests = reqs
        result.actions.append("dry run: nothing sent")
        return result


def _error_text(r) -> str:
    """The ``error`` of an Ollama error answer, else its body."""
    try:
        body = r.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    return r.text


@hookimpl(trylast=True)
def gl_register_publishers(register):
    register(OllamaPublisher())
