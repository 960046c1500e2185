"""How the published model's chat is rendered: Ollama's renderer, the GGUF's own chat template, or a TEMPLATE.

Decided per server version and GGUF, so that what gl sends is what runs:

- a Modelfile with RENDERER/PARSER (the gemma4 family): Ollama renders the
  chat itself and uses no template (server/routes.go ``usesOllamaRenderedChat``);
  a GGUF of architecture gemma4 gets them from create even when not sent
  (server/create.go ``createModel``). Servers before 0.20.0 cannot run Gemma 4.
- a family TEMPLATE from modelfiles/: on a server that prefers the GGUF's Jinja
  (0.30.0-rc30 on), when ``shouldPreferChatTemplate`` would pass this TEMPLATE
  over for the GGUF's chat template, no TEMPLATE is sent: the server renders
  the Jinja. Otherwise the TEMPLATE is sent (tools included), and it is what
  runs.
- a TEMPLATE the variant sets itself (``template`` or its own Modelfile) is
  always sent as written; gl says when the server will not use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gl_plugins.errors import GLError
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.modelfile.capabilities import go_template_capabilities, jinja_capabilities, prefers_chat_template
from gl_plugins.publish.server import GEMMA4, OllamaVersion

RENDERED = "renderer"  # Ollama's own renderer and parser
GGUF = "gguf"  # no TEMPLATE: the server renders the GGUF's chat template
TEMPLATE = "template"  # the Modelfile's TEMPLATE runs
RAW = "raw"  # no TEMPLATE and no chat template: the prompt goes in as it is


@dataclass
class ChatFormat:
    kind: str
    reason: str
    gguf_capabilities: list[str] = field(default_factory=list)
    template_capabilities: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = {RENDERED: "Ollama's renderer", GGUF: "the GGUF's chat template", TEMPLATE: "the TEMPLATE",
                RAW: "the raw prompt"}[self.kind]
        return f"{what}: {self.reason}"


def _caps(caps: list[str]) -> str:
    return ", ".join(caps) if caps else "no tools, no thinking"


def _server(server: OllamaVersion | None) -> str:
    return f"Ollama {server}" if server is not None else "an Ollama server of unknown version"


def refuse_unfit_server(architecture: str | None, renderer: str | None, server: OllamaVersion | None) -> None:
    """A GLError when this server version cannot run the model at all."""
    gemma4 = architecture == "gemma4" or renderer == "gemma4"
    if gemma4 and server is not None and not server.knows_gemma4:
        raise GLError(f"Ollama {server} cannot run Gemma 4: the gemma4 architecture, renderer and parser "
                      f"arrived in Ollama {GEMMA4}; update the server")


def decide(mf: mfmod.Modelfile, *, architecture: str | None, chat_template: str | None,
           server: OllamaVersion | None, own_template: bool, source: str) -> tuple[mfmod.Modelfile, ChatFormat]:
    """(the Modelfile to send, how its chat is rendered). ``source`` names the template (a family or a file)."""
    renderer = mf.last("RENDERER")
    refuse_unfit_server(architecture, renderer, server)
    jinja = jinja_capabilities(chat_template)
    template = mf.template
    go = go_template_capabilities(template)
    if renderer or mf.last("PARSER"):
        names = f"RENDERER {renderer or '-'}, PARSER {mf.last('PARSER') or '-'}"
        unused = "; its TEMPLATE is stored but not used" if template else ""
        return mf, ChatFormat(RENDERED, f"{names} from {source}: the server renders the chat itself "
                                        f"(thinking and tools included){unused}", jinja, go)
    if architecture == "gemma4":
        return mf, ChatFormat(RENDERED, "the GGUF's architecture is gemma4, so create sets RENDERER and PARSER "
                                        "gemma4 itself; a TEMPLATE is stored but not used", jinja, go)
    if template is None:
        if chat_template:
            return mf, ChatFormat(GGUF, f"{source} sends no TEMPLATE; the server renders the GGUF's chat template "
                                        f"({_caps(jinja)}), or a template it detects from it", jinja, go)
        return mf, ChatFormat(RAW, f"{source} sends no TEMPLATE and the GGUF has no chat template", jinja, go)
    over = (server is not None and server.prefers_chat_template and prefers_chat_template(chat_template, template))
    versus = f"the GGUF's chat template ({_caps(jinja)}) against {source} ({_caps(go)})"
    if over and not own_template:
        kept = [c for c in mf.commands if c.instruction != "TEMPLATE"]
        return (mfmod.Modelfile(kept, mf.path),
                ChatFormat(GGUF, f"no TEMPLATE sent: {_server(server)} prefers {versus}", jinja, go))
    if over:
        return mf, ChatFormat(TEMPLATE, f"{source} is sent as written, but {_server(server)} will render {versus} "
                                        f"instead", jinja, go)
    if not chat_template:
        why = "the GGUF has no chat template"
    elif server is None:
        why = "the server's version is unknown, and a full template works on every version"
    elif not server.prefers_chat_template:
        why = f"{_server(server)} renders Go templates only (the GGUF's Jinja is used from 0.30)"
    else:
        why = f"{_server(server)} keeps it over {versus}"
    return mf, ChatFormat(TEMPLATE, f"{source} ({_caps(go)}) is sent: {why}", jinja, go)
