"""gl modelfile lint / render: grammar, typed parameters, and a Modelfile held against its GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_gguf
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.modelfile.lint import chat_info, lint_file, lint_modelfile
from gl_plugins.modelfile.templates import FAMILIES, compose, detect_family, template


def codes(findings, severity=None):
    return sorted(f.code for f in findings if severity is None or f.severity == severity)


@pytest.fixture(scope="module")
def chatml_gguf(tmp_path_factory) -> Path:
    return tiny_gguf.write(tmp_path_factory.mktemp("chatml") / "chatml.gguf")


def test_the_gemma3_template_fits_the_real_gemma3_and_chatml_does_not(gemma_q4):
    info = chat_info(gemma_q4)
    assert detect_family(info) == ("gemma3", "GGUF architecture gemma3")
    ok = lint_modelfile(compose(template("gemma3"), str(gemma_q4)), gguf=info)
    assert codes(ok, "error") == []
    wrong = lint_modelfile(compose(template("qwen2.5"), str(gemma_q4), path="qwen.Modelfile"), gguf=info)
    assert codes(wrong, "error") == ["modelfile-stop-not-in-vocab", "modelfile-stop-not-in-vocab",
                                      "modelfile-template-token-not-in-vocab"]
    stop = [f for f in wrong if f.code == "modelfile-stop-not-in-vocab"][0]
    assert "<|im_start|> is not a token of gemma-3-270m-q4_k_m.gguf" in stop.message


def test_template_disagreeing_with_the_embedded_chat_template(chatml_gguf):
    info = chat_info(chatml_gguf)
    assert codes(lint_modelfile(compose(template("qwen2.5"), str(chatml_gguf)), gguf=info), "error") == []
    gemma = lint_modelfile(compose(template("gemma3"), str(chatml_gguf)), gguf=info)
    assert "modelfile-template-mismatch" in codes(gemma)
    mismatch = [f for f in gemma if f.code == "modelfile-template-mismatch"][0]
    assert "<start_of_turn>" in mismatch.message and "<|im_start|>" in mismatch.evidence
    # phi4's <|im_sep|> is neither a token here nor in the chat template
    phi = lint_modelfile(compose(template("phi4"), str(chatml_gguf)), gguf=info)
    assert {"modelfile-template-mismatch", "modelfile-template-token-not-in-vocab"} <= set(codes(phi))
    # a template without any turn marker disagrees too
    raw = compose(template("qwen2.5"), str(chatml_gguf), template_override="{{ .Prompt }}")
    assert "modelfile-template-mismatch" in codes(lint_modelfile(raw, gguf=info))


def test_bos_and_eos_referenced_by_name_count_as_used(tmp_path):
    gguf = tiny_gguf.write(tmp_path / "g.gguf", arch="gemma3", tokens=tiny_gguf.GEMMA_TOKENS,
                           chat_template=tiny_gguf.GEMMA_TEMPLATE)
    info = chat_info(gguf)
    with_bos = compose(template("gemma3"), str(gguf),
                       template_override="<bos><start_of_turn>user\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n")
    assert codes(lint_modelfile(with_bos, gguf=info), "error") == []


def test_each_family_template_is_clean_on_its_own_vocabulary(tmp_path):
    vocab = {"gemma3": ["<start_of_turn>", "<end_of_turn>"], "gemma4": ["<|turn>", "<turn|>"],
             "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
             "qwen2.5": ["<|im_start|>", "<|im_end|>"], "qwen3": ["<|im_start|>", "<|im_end|>"],
             "mistral": ["[INST]", "[/INST]", "</s>"], "phi4": ["<|im_start|>", "<|im_end|>", "<|im_sep|>"]}
    assert set(vocab) == set(FAMILIES)
    for fam, toks in vocab.items():
        # Phi-4 GGUFs say phi3; Llama 3 and Mistral both say llama: the vocabulary decides
        arch = {"phi4": "phi3", "qwen3": "qwen3"}.get(fam, "llama")
        gguf = tiny_gguf.write(tmp_path / f"{fam}.gguf", arch=arch, tokens=["<unk>", "<s>", *toks],
                               chat_template=None)
        info = chat_info(gguf)
        found = lint_modelfile(compose(template(fam), str(gguf)), gguf=info)
        assert codes(found, "error") == [], (fam, [f.text() for f in found])
        assert detect_family(info)[0] == fam


def test_lint_findings_carry_line_numbers_and_hints(tmp_path):
    p = tmp_path / "Modelfile"
    p.write_text("FROM ./missing.gguf\n# comment\nPARAMETER stop <end_of_turn>\nPARAMETER Temperature 1\n"
                 "PARAMETER top_k lots\nPARAMETER mirostat 2\nSYSTEM one\nSYSTEM two\nREQUIRES soon\n"
                 "TEMPLATE {{ .Prompt }\n")
    found = {f.code: f for f in lint_file(p)}
    assert found["modelfile-from-missing"].line == 1
    assert found["modelfile-unknown-parameter"].line == 4
    assert "case-sensitive: write temperature" in found["modelfile-unknown-parameter"].hint
    assert found["modelfile-parameter-type"].line == 5
    assert found["modelfile-deprecated-parameter"].severity == "warning"
    assert found["modelfile-repeated"].line == 8 and "first on line 7" in found["modelfile-repeated"].message
    assert found["modelfile-requires"].line == 9
    assert found["modelfile-template-syntax"].line == 10
    assert found["modelfile-from-missing"].text().startswith(f"{p}:1: error: modelfile-from-missing")


def test_a_syntax_error_is_one_finding(tmp_path):
    p = tmp_path / "Modelfile"
    p.write_text("FROM x\nMESSAGE robot beep\n")
    (f,) = lint_file(p)
    assert (f.code, f.line, f.severity) == ("modelfile-syntax", 2, "error")
    assert "MESSAGE role 'robot'" in f.message


def test_gl_modelfile_lint_cli(gl, tmp_path, gemma_q4):
    good = tmp_path / "good.Modelfile"
    good.write_text(mfmod.render(compose(template("gemma3"), str(gemma_q4))))
    bad = tmp_path / "bad.Modelfile"
    bad.write_text(mfmod.render(compose(template("llama3"), str(gemma_q4))) + "PARAMETER Top_k 3\n")
    code, out, err = gl("modelfile", "lint", good)
    assert code == 0, out + err
    assert "1 Modelfile: 0 errors" in err
    code, out, err = gl("modelfile", "lint", good, bad)
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith(f"{bad}:") and "modelfile-stop-not-in-vocab" in line for line in lines)
    assert any(line.startswith(f"{bad}:") and "modelfile-unknown-parameter" in line for line in lines)
    assert not any(line.startswith(f"{good}:") and "error" in line for line in lines)
    code, out, _ = gl("modelfile", "lint", "--json", bad)
    assert code == 1 and '"modelfile-template-token-not-in-vocab"' in out
    code, _, err = gl("modelfile", "lint", tmp_path / "nope")
    assert code == 2 and "nope: file not found" in err


def test_gl_modelfile_render_for_a_gguf(gl, tmp_path, gemma_q4):
    out_file = tmp_path / "sub" / "Modelfile"
    out_file.parent.mkdir()
    code, out, err = gl("modelfile", "render", "--gguf", gemma_q4, "-o", out_file)
    assert code == 0, err
    m = mfmod.parse_file(out_file)
    assert mfmod.expand_from(m.from_, out_file.parent) == Path(gemma_q4).absolute()
    assert mfmod.typed_parameters(m)["stop"] == ["<end_of_turn>"]
    code, out, err = gl("modelfile", "render", "--gguf", gemma_q4, "--family", "chatml")
    assert code == 0 and "<|im_start|>" in out
    code, _, err = gl("modelfile", "render", "--gguf", gemma_q4, "--family", "vicuna")
    assert code == 2 and "unknown Modelfile family 'vicuna'" in err


def test_the_shipped_templates_lint_clean_as_templates(gl):
    files = sorted((Path(__file__).resolve().parents[1] / "modelfiles").glob("*.Modelfile"))
    assert len(files) == len(FAMILIES)
    code, out, err = gl("modelfile", "lint", "--template", "--strict", *files)
    assert code == 0, out + err
    code, out, _ = gl("modelfile", "lint", files[0])
    assert code == 1 and "modelfile-from-missing" in out  # as a plain Modelfile, ./model.gguf is missing
