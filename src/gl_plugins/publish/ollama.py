"""The ``ollama`` publisher: one blob upload, one create, through the official ``ollama`` client.

Steps: HEAD the blob and upload it only when the server lacks it (streamed
from disk with a progress bar, then its throughput); compare the model the
server already has under that name (``show``) and create it only when
something differs, and only after a HEAD shows the server still holds the
whole, digest-checked blob; confirm with ``show`` and ``list``; with ``--push`` copy it
to ``namespace/model:tag`` and push that. Transient errors (connection
trouble, 5xx) are retried with backoff inside ``retry_seconds``; a digest
mismatch makes gl re-hash the file once and start over.
"""

from __future__ import annotations

import re
import struct
import time

from gl_plugins import digests
from gl_plugins.errors import GLError
from gl_plugins.hookspecs import hookimpl
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.publish.prepare import PublishRequest, PublishResult
from gl_plugins.publish.retry import describe, with_retry
from gl_plugins.redaction import redact

CHUNK = 4 << 20
DIGEST_IN_PATH = re.compile(r"sha256[-:]([0-9a-f]{64})")


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


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def _normal_params(params: dict) -> dict:
    out = {}
    for k, v in (params or {}).items():
        if isinstance(v, list):
            out[k] = [str(x) for x in v]
        elif isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = _f32(v) if k in mfmod.FLOAT_PARAMETERS else int(v)
        else:
            out[k] = v
    return out


class OllamaPublisher:
    name = "ollama"
    description = "Create the model on an Ollama server (official client): upload once, create, confirm, push."

    def available(self, options) -> str | None:
        import httpx
        import ollama

        client = _client(options, timeout=httpx.Timeout(5.0))
        try:
            client.list()
        except ollama.ResponseError as e:
            return f"the server at {options.host_url()} answered {e.status_code} to /api/tags ({e.error})"
        except (ConnectionError, httpx.TransportError) as e:
            return f"no Ollama server answers at {options.host_url()} ({describe(e)})"
        finally:
            client.close()
        return None

    # ------------------------------------------------------------ steps
    def _blob_present(self, client, digest: str) -> bool:
        import httpx

        r = client._client.head(f"/api/blobs/sha256:{digest}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        if r.status_code in (400,):
            raise GLError(f"the server refused the digest sha256:{digest} (400)")
        raise httpx.HTTPStatusError(f"HEAD blob answered {r.status_code}", request=r.request, response=r)

    def _upload(self, client, req: PublishRequest) -> float:
        import httpx
        from tqdm import tqdm

        started = time.monotonic()
        with tqdm(total=req.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {req.gguf.name}",
                  disable=None if req.options.progress else True, leave=False) as bar:
            def chunks():
                with open(req.gguf, "rb", buffering=0) as f:
                    while block := f.read(CHUNK):
                        yield block
                        bar.update(len(block))

            r = client._client.post(f"/api/blobs/sha256:{req.digest}", content=chunks(),
                                    headers={"Content-Length": str(req.size),
                                             "Content-Type": "application/octet-stream"})
        if r.status_code in (200, 201):
            return time.monotonic() - started
        text = r.text
        if r.status_code == 400 and "digest mismatch" in text:
            raise DigestMismatch(text)
        import ollama

        try:
            r.raise_for_status()
        except httpx.HTTPStatusError:
            raise ollama.ResponseError(text, r.status_code) from None
        raise ollama.ResponseError(text, r.status_code)

    def _ensure_blob(self, client, req: PublishRequest, result: PublishResult, retry) -> None:
        for attempt in (1, 2):
            present = retry(lambda: self._blob_present(client, req.digest), "checking the blob")
            if present:
                result.actions.append(f"blob sha256:{req.digest[:12]} already on the server; nothing uploaded")
                return
            try:
                def once():
                    if self._blob_present(client, req.digest):  # a dropped attempt may have finished
                        return 0.0
                    return self._upload(client, req)

                seconds = retry(once, f"uploading {req.gguf.name}")
            except DigestMismatch as e:
                digests.forget(req.gguf)
                fresh = digests.sha256_file(req.gguf)
                if attempt == 2 or fresh == req.digest:
                    raise GLError(f"the server computed a different sha256 for {req.gguf} than gl sent "
                                  f"({redact(str(e)).strip()}); the file changed during the upload or the "
                                  f"connection corrupts data") from None
                req.echo(f"{req.gguf.name} changed since it was hashed; its sha256 is now {fresh[:12]}, "
                         f"uploading again")
                self._retarget(req, fresh)
                continue
            result.uploaded_bytes = req.size
            result.seconds["upload"] = seconds
            rate = req.size / seconds if seconds > 0 else float("inf")
            result.actions.append(f"uploaded {req.gguf.name}: {_human(req.size)} in {seconds:.1f} s "
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
                          f"({req.gguf.name}) after storing it; no model was created from it")

    def _retarget(self, req: PublishRequest, digest: str) -> None:
        req.digest = digest
        req.create["files"] = {k: f"sha256:{digest}" for k in req.create.get("files", {})}
        digests.digest(req.gguf)  # remember the new digest

    def _matches(self, client, req: PublishRequest) -> bool:
        """Whether the server already holds exactly this model under this name."""
        import ollama

        try:
            shown = client.show(req.name.short())
        except ollama.ResponseError as e:
            if e.status_code == 404:
                return False
            raise
        try:
            mf = mfmod.parse(shown.modelfile or "", "ollama show", require_from=True)
            params = mfmod.typed_parameters(mf)
        except GLError:
            return False
        m = DIGEST_IN_PATH.search(mf.from_ or "")
        want = req.create
        return (m is not None and m.group(1) == req.digest
                and (mf.template or None) == (want.get("template") or None)
                and (mf.system or None) == (want.get("system") or None)
                and mf.licenses == list(want.get("license") or [])
                and mf.messages == list(want.get("messages") or [])
                and _normal_params(params) == _normal_params(want.get("parameters")))

    def _create(self, client, req: PublishRequest, result: PublishResult) -> None:
        body = {k: v for k, v in req.create.items() if k != "model"}
        unknown = set(body) - {"files", "template", "system", "license", "parameters", "messages", "from",
                               "adapters"}
        if unknown:
            raise GLError(f"the ollama Python client cannot send {', '.join(sorted(unknown))} in a create "
                          f"request; remove those instructions from the Modelfile")
        if "from" in body:
            body["from_"] = body.pop("from")
        for status in client.create(req.name.short(), stream=True, **body):
            if status.status:
                req.echo(f"  {status.status}")
        result.created = True
        result.actions.append(f"created {req.name.short()}")

    def _confirm(self, client, req: PublishRequest) -> None:
        if not self._matches(client, req):
            raise GLError(f"after create, the server's {req.name.short()} does not hold what was sent "
                          f"(blob sha256:{req.digest[:12]}, template, parameters)")
        listed = {m.model for m in client.list().models}
        if req.name.short() not in listed and req.name.full() not in listed:
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

        def retry(fn, what):
            return with_retry(fn, budget=opts.retry_seconds, what=what, echo=req.echo)

        step = f"uploading {req.gguf.name}"
        try:
            self._ensure_blob(client, req, result, retry)
            step = f"creating {req.name.short()}"
            if retry(lambda: self._matches(client, req), "reading the existing model"):
                result.unchanged = True
                result.actions.append(f"{req.name.short()} on the server already matches; nothing created")
            else:
                self._verify_blob(client, req, result, retry)
                retry(lambda: self._create(client, req, result), step)
                step = f"confirming {req.name.short()}"
                retry(lambda: self._confirm(client, req), step)
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
        digest = f"sha256:{req.digest}"
        reqs = [{"method": "HEAD", "path": f"/api/blobs/{digest}"},
                {"method": "POST", "path": f"/api/blobs/{digest}", "body": f"<{req.size} bytes of {req.gguf}>",
                 "when": "the HEAD answers 404"},
                {"method": "POST", "path": "/api/show", "body": {"model": req.name.short()}},
                {"method": "POST", "path": "/api/create", "body": {**req.create, "stream": True},
                 "when": "the server's model differs"},
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


@hookimpl(trylast=True)
def gl_register_publishers(register):
    register(OllamaPublisher())
