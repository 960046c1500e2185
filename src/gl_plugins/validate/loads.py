"""loads: the llama.cpp build gl drives loads the file and evaluates a prompt.

Runs ``llama-completion`` for a few tokens. A file llama.cpp refuses (an
unknown type, a tensor of the wrong size, an architecture it does not know)
or crashes on is an error with llama.cpp's own last error line as evidence.
Since Ollama runs GGUF models on llama.cpp, this is what Ollama will meet.
"""

from __future__ import annotations

import os
import time

from gl_plugins.findings import Finding
from gl_plugins.hookspecs import hookimpl

PROMPT = "The quick brown fox"


class Loads:
    name = "loads"
    description = "llama.cpp (the build gl drives) loads the file and evaluates a prompt."
    defaults = {"timeout": 300.0, "n_predict": 4}

    def validate(self, ctx) -> list[Finding]:
        from gl_plugins.toolchain.llama_eval import ModelRunError, complete
        from gl_plugins.toolchain.llamacpp import find_tool, tool_version

        ctx.require_header()
        s = ctx.settings(self)
        file = os.fspath(ctx.path)
        version = tool_version(find_tool("llama-completion"))
        t0 = time.monotonic()
        try:
            c = complete(ctx.path, PROMPT, n_predict=int(s["n_predict"]), ctx=128, timeout=float(s["timeout"]))
        except ModelRunError as e:
            tail = "\n".join(ln for ln in e.output.strip().splitlines()[-6:])
            return [Finding("error", "loads-failed", f"llama.cpp {version} cannot run the file: {e}", file=file,
                            evidence=tail, hint="a file llama.cpp cannot load will not run in Ollama either")]
        seconds = time.monotonic() - t0
        ctx.figures["load_seconds"] = round(seconds, 2)
        return [Finding("info", "loads-ok", f"llama.cpp {version} loaded the file and evaluated a prompt "
                                            f"in {seconds:.1f} s", file=file,
                        evidence=f"{PROMPT}{c.text}")]


@hookimpl(trylast=True)
def gl_register_validators(register):
    register(Loads())
