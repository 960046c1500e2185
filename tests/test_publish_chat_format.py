"""Which chat format runs on the server: Ollama's renderer, the GGUF's Jinja, or gl's TEMPLATE.

The rules restate server/images.go (shouldPreferChatTemplate, the capability
readers) and server/create.go (gemma4's renderer) of Ollama v0.33.0-rc2.
"""

from __future__ import annotations

import pytest

from gl_plugins.errors import GLError
from gl_plugins.modelfile.templates import template
from gl_plugins.publish.chat_format import GGUF, RAW, RENDERED, TEMPLATE, decide
from gl_plugins.publish.server import parse_version
from tiny_gguf import THINKING_JINJA

PLAIN_JINJA = "{% for message in messages %}<|im_start|>{{ message['role'] }}{% endfor %}"


def run(family, chat_template, version, *, architecture="qwen2", own=False):
    server = parse_version(version) if version else None
    return decide(template(family), architecture=architecture, chat_template=chat_template, server=server,
                  own_template=own, source=f"modelfiles/{family}")


def test_a_gguf_whose_jinja_can_do_more_is_rendered_by_the_server_from_0_30():
    mf, fmt = run("qwen2.5", THINKING_JINJA, "0.33.0-rc2")
    assert fmt.kind == GGUF and mf.template is None
    assert (fmt.gguf_capabilities, fmt.template_capabilities) == (["tools", "thinking"], ["tools"])
    assert fmt.describe().startswith("the GGUF's chat template: no TEMPLATE sent: Ollama 0.33.0-rc2 prefers")
    assert mf.all("PARAMETER")  # the stops and sampling stay


@pytest.mark.parametrize("version", ["0.29.3", "0.30.0-rc29", None])
def test_before_0_30_rc30_or_on_an_unknown_server_the_full_template_is_sent(version):
    mf, fmt = run("qwen2.5", THINKING_JINJA, version)
    assert fmt.kind == TEMPLATE and mf.template == template("qwen2.5").template


def test_a_template_as_capable_as_the_jinja_is_kept():
    mf, fmt = run("qwen3", THINKING_JINJA, "0.33.0")
    assert fmt.kind == TEMPLATE and mf.template == template("qwen3").template
    assert "keeps it over the GGUF's chat template (tools, thinking)" in fmt.reason
    mf, fmt = run("qwen2.5", PLAIN_JINJA, "0.33.0")  # the Jinja has fewer: gl's template runs
    assert fmt.kind == TEMPLATE


def test_a_template_the_variant_sets_is_sent_but_the_user_is_told_it_will_not_run():
    mf, fmt = run("qwen2.5", THINKING_JINJA, "0.33.0", own=True)
    assert fmt.kind == TEMPLATE and mf.template is not None
    assert "will render the GGUF's chat template (tools, thinking)" in fmt.reason and fmt.reason.endswith("instead")


def test_gemma4_is_rendered_by_ollama_and_needs_0_20():
    mf, fmt = run("gemma4", None, "0.33.0", architecture="gemma4")
    assert fmt.kind == RENDERED and mf.template is None
    assert fmt.reason.startswith("RENDERER gemma4, PARSER gemma4 from modelfiles/gemma4")
    _, fmt = run("gemma3", None, "0.33.0", architecture="gemma4")  # a gemma4 GGUF under another family
    assert fmt.kind == RENDERED and "create sets RENDERER and PARSER gemma4 itself" in fmt.reason
    with pytest.raises(GLError, match=r"Ollama 0\.19\.9 cannot run Gemma 4"):
        run("gemma4", None, "0.19.9", architecture="gemma4")


def test_no_template_and_no_chat_template_is_the_raw_prompt():
    from gl_plugins.modelfile import parse as mfmod

    mf = mfmod.parse("FROM ./m.gguf\nPARAMETER stop </s>\n")
    _, fmt = decide(mf, architecture="llama", chat_template=None, server=parse_version("0.33.0"),
                    own_template=True, source="Modelfile")
    assert fmt.kind == RAW
    _, fmt = decide(mf, architecture="llama", chat_template=PLAIN_JINJA, server=parse_version("0.33.0"),
                    own_template=True, source="Modelfile")
    assert fmt.kind == GGUF


@pytest.mark.parametrize("older,newer", [("0.20.0-rc0", "0.20.0"), ("0.30.0-rc9", "0.30.0-rc16"),
                                         ("0.30.0-rc16", "0.30.0-rc30"), ("0.30.0", "0.30.1"),
                                         ("0.9.9", "0.10.0")])
def test_versions_order_as_ollamas_tags(older, newer):
    assert parse_version(older).key() < parse_version(newer).key()
    assert parse_version(newer).at_least(older) and not parse_version(older).at_least(newer)


def test_a_development_build_has_everything():
    dev = parse_version("0.0.0")
    assert dev.rewrites_gguf and dev.prefers_chat_template and dev.knows_gemma4
