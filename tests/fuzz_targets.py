"""Fuzz targets: every parser of outside input, with seed files and a mutator.

Shared by the property tests (tests/test_fuzz.py, hypothesis, bounded budget)
and by bench/fuzz.py (long runs, 100,000 cases per target). For bad input the
only acceptable outcome is gl's own error type naming the file.
"""

from __future__ import annotations

import functools
import json
import random
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gl_plugins.errors import GLError


@dataclass
class Target:
    name: str
    suffix: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[Path], object]
    text: bool = False  # text formats get text-level mutations too
    prepare: Callable[[Path], None] | None = None  # writes the files a case refers to, once per folder
    names_input: bool = False  # the input is a value, not a file: errors must quote the value

    def folder(self, parent: Path) -> Path:
        """A fresh folder for this target's cases, with what :attr:`prepare` puts there."""
        folder = parent / self.name
        folder.mkdir(parents=True, exist_ok=True)
        if self.prepare is not None:
            self.prepare(folder)
        return folder


TARGETS: dict[str, Target] = {}


def target(name: str, suffix: str, seeds: Callable[[], list[bytes]], text: bool = False,
           prepare: Callable[[Path], None] | None = None, names_input: bool = False):
    def deco(run):
        TARGETS[name] = Target(name, suffix, functools.cache(seeds), run, text, prepare, names_input)
        return run
    return deco


# ---------------------------------------------------------------- mutations

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 2**31, 2**40, 2**60, 2**63 - 1, 2**64 - 1]


def mutate(data: bytes, rng: random.Random, text: bool = False) -> bytes:
    """One to four structured mutations: truncate, flip, inflate a count, splice, invalid UTF-8."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            continue
        op = rng.randrange(8 if text else 6)
        i = rng.randrange(len(b))
        if op == 0:  # truncate
            del b[i:]
        elif op == 1:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
        elif op == 2:  # inflate a u32/u64 count or length
            fmt = rng.choice(["<I", "<Q"])
            v = rng.choice(_INTERESTING) & (0xFFFFFFFF if fmt == "<I" else 2**64 - 1)
            raw = struct.pack(fmt, v)
            b[i:i + len(raw)] = raw
        elif op == 3:  # duplicate a slice (nesting, repeated entries)
            j = rng.randrange(i, min(len(b), i + 256) + 1)
            b[i:i] = b[i:j] * rng.randint(1, 4)
        elif op == 4:  # random bytes
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif op == 5:  # invalid UTF-8
            b[i:i] = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        elif op == 6:  # text: drop or repeat a line
            lines = bytes(b).split(b"\n")
            k = rng.randrange(len(lines))
            if rng.random() < 0.5:
                del lines[k]
            else:
                lines.insert(k, lines[k])
            b = bytearray(b"\n".join(lines))
        else:  # text: insert a syntax character
            b[i:i] = rng.choice([b'"', b'"""', b"=", b"[", b"]", b"{", b"#", b"\\", b"\x00", b"\n"])
    return bytes(b)


def check(t: Target, data: bytes, folder: Path) -> str | None:
    """None when the parser accepted the input or refused it properly; else what went wrong."""
    path = folder / f"case{t.suffix}"
    path.write_bytes(data)
    try:
        t.run(path)
    except GLError as e:
        if t.names_input:
            value = data.decode("utf-8", "surrogateescape")
            if repr(value) not in str(e) and not (not value and "empty" in str(e)):
                return f"GLError does not quote the value: {e}"
        elif str(path) not in str(e) and path.name not in str(e):
            return f"GLError does not name the file: {e}"
    except RecursionError:
        return "RecursionError"
    except Exception as e:  # noqa: BLE001 - any other exception is a failure
        return f"{type(e).__name__}: {e}"
    return None


# ---------------------------------------------------------------- targets

def _gguf_seeds() -> list[bytes]:
    from synth import SynthSpec, write_model

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in (SynthSpec(n_layer=1, hidden=64, ffn=128, vocab=32),
                     SynthSpec(arch="gemma4", n_layer=2, hidden=64, ffn=[128, 256], n_kv_shared=1, ple=16,
                               vocab=32, n_head=2, n_head_kv=1)):
            p = Path(tmp) / "s.gguf"
            write_model(p, spec)
            out.append(p.read_bytes())
    return out


@target("gguf-header", ".gguf", _gguf_seeds)
def _run_gguf(path: Path):
    from gl_plugins.facts import facts_from_gguf

    return facts_from_gguf(path)


def _config_seeds() -> list[bytes]:
    from model_configs import CONFIGS

    return [json.dumps(c, indent=1).encode() for c in CONFIGS.values()]


@target("hf-config", ".json", _config_seeds, text=True)
def _run_config(path: Path):
    from gl_plugins.facts import load_facts

    return load_facts(path)


# ---------------------------------------------------------------- imatrix (both formats)

def _imatrix_entries():
    """Dense entries, an MoE entry with one never-routed expert, and in_sum on one entry."""
    import numpy as np

    from gl_plugins.imatrix.formats import OutEntry

    rng = np.random.default_rng(7)
    out = []
    for name, n_mat, ne0, in_sum in (("blk.0.attn_q.weight", 1, 64, True), ("blk.0.ffn_down.weight", 1, 96, False),
                                     ("blk.1.ffn_up_exps.weight", 4, 32, False)):
        sums = (rng.random((n_mat, ne0), dtype=np.float32) + 0.5) * 256
        counts = np.array([256] * (n_mat - 1) + [0 if n_mat > 1 else 256], dtype=np.float32)
        extra = rng.standard_normal((n_mat, ne0)).astype(np.float32) if in_sum else None
        out.append(OutEntry(name, n_mat, ne0, in_sum, (lambda s=sums, c=counts, x=extra: (s, c, x))))
    return out


def _real_imatrix(suffix: str) -> list[bytes]:
    """The real llama-imatrix output the imatrix tests cache (tests/imatrix_files.py), when present."""
    from gl_plugins.toolchain.llamacpp import cache_root

    found = sorted((cache_root() / "test-assets").glob(f"imatrix-*/imatrix{suffix}"))
    return [found[0].read_bytes()] if found else []


def _imatrix_gguf_seeds() -> list[bytes]:
    from gl_plugins.imatrix.formats import write_gguf

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "i.gguf"
        write_gguf(p, _imatrix_entries(), datasets=["calibration.txt", "more.txt"], chunk_count=4, chunk_size=64)
        return [p.read_bytes()] + _real_imatrix(".gguf")


def _imatrix_dat_seeds() -> list[bytes]:
    from gl_plugins.imatrix.formats import write_dat

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "i.dat"
        entries = [(e.name, e.load()[0].reshape(-1), 4) for e in _imatrix_entries()]
        write_dat(p, entries, chunk_count=4, dataset="calibration.txt")
        with_trailer = p.read_bytes()
        n = struct.unpack_from("<i", with_trailer)[0]
        assert n == 3
        return [with_trailer, with_trailer[:-(8 + len(b"calibration.txt"))]] + _real_imatrix(".dat")


def _run_imatrix(path: Path):
    """What ``gl imatrix info`` and ``gl imatrix convert`` do; gl must read back what it wrote."""
    from gl_plugins.imatrix.formats import convert, entry_stats, read_imatrix

    imx = read_imatrix(path)
    for e in imx.entries.values():
        entry_stats(imx, e)
    other = "dat" if imx.format == "gguf" else "gguf"
    out = path.with_name(f"converted.{other}")
    convert(imx, out, other)
    back = read_imatrix(out)
    if set(back.entries) - set(imx.entries):
        raise AssertionError(f"conversion invented entries: {sorted(set(back.entries) - set(imx.entries))}")
    return back


target("imatrix-gguf", ".gguf", _imatrix_gguf_seeds)(_run_imatrix)
target("imatrix-dat", ".dat", _imatrix_dat_seeds)(_run_imatrix)


# ---------------------------------------------------------------- tensor-type files

@functools.cache
def _small_facts():
    from gl_plugins.facts import facts_from_gguf
    from synth import SynthSpec, write_model

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.gguf"
        write_model(p, SynthSpec(arch="gemma3", n_layer=3, hidden=64, ffn=192, vocab=32, n_head=2, n_head_kv=1))
        return facts_from_gguf(p)


def _map_seeds() -> list[bytes]:
    from gl_plugins.plan.tensor_map import render, rules_for

    facts = _small_facts()
    types = {t.name: ("Q4_K" if "ffn" in t.name else "Q8_0") for t in facts.tensors if len(t.shape) > 1}
    hand = (b"token_embd\\.weight=q4_0\nattn_(q|k|v)\\.weight=q5_0\nblk\\.[0-1]\\.ffn_down\\.weight=Q6_K\n"
            b"blk.2.=IQ4_NL   ffn_(?:gate|up)=q4_k\n")
    return [render(rules_for(types)).encode(), hand]


@target("tensor-map", ".txt", _map_seeds, text=True)
def _run_map(path: Path):
    """``read_map`` as the imatrix audit and the hooks use it, then ``gl plan lint``'s checks."""
    from gl_plugins.plan.lint import lint_file
    from gl_plugins.plan.tensor_map import parse_map_bytes, read_map, render

    try:
        rules = read_map(path)
    except GLError:
        pass  # a refusal; the lint below reports the same token as a finding
    else:  # emit→parse: what gl writes for the rules reads back as the same rules
        try:
            text = render(rules)
        except ValueError:
            text = None  # a pattern holding whitespace cannot be written; render says so
        if text is not None:
            back = [(r.pattern, r.type) for r in parse_map_bytes(text.encode("utf-8", "surrogateescape"), "x")]
            if back != [(r.pattern, r.type) for r in rules]:
                raise AssertionError(f"emit→parse changed the rules: {rules} -> {back}")
    return lint_file(path, _small_facts())


# ---------------------------------------------------------------- Modelfiles

def _modelfile_seeds() -> list[bytes]:
    from gl_plugins.modelfile import parse as mfmod
    from gl_plugins.modelfile.templates import FAMILIES, compose, template

    out = [mfmod.render(compose(template(f), "./model.gguf")).encode() for f in FAMILIES]
    out.append(mfmod.render(mfmod.Modelfile([
        mfmod.Command("FROM", "gemma3:270m"), mfmod.Command("SYSTEM", 'Say "hi".\nThen stop.'),
        mfmod.Command("PARAMETER", "0.7", "temperature"), mfmod.Command("PARAMETER", "<end>", "stop"),
        mfmod.Command("MESSAGE", "Hello", "user"), mfmod.Command("MESSAGE", "Hi there", "assistant"),
        mfmod.Command("LICENSE", "line one\nline two"), mfmod.Command("ADAPTER", "./lora.gguf")]),
        header="a comment\nand another").encode())
    return out


@target("modelfile", ".Modelfile", _modelfile_seeds, text=True)
def _run_modelfile(path: Path):
    """Parse as Ollama does, type the parameters, and render back to the same commands."""
    from gl_plugins.modelfile import parse as mfmod

    mf = mfmod.parse_file(path)
    mfmod.typed_parameters(mf)
    try:
        text = mfmod.render(mf)
    except GLError:
        return mf  # a value no quoting can carry: refused by name, never written wrong
    back = mfmod.parse(text, path)
    if not back.same(mf):
        raise AssertionError(f"render→parse changed the commands: {mf.commands} -> {back.commands}")
    return mf


# ---------------------------------------------------------------- gl.toml

def _prepare_project(folder: Path) -> None:
    """The files the gl.toml seeds name: a tiny GGUF, a Modelfile, a tensor map, an imatrix."""
    import tiny_gguf
    from gl_plugins.imatrix.formats import write_dat

    tiny_gguf.write(folder / "tiny.gguf")
    (folder / "Modelfile").write_text('FROM ./tiny.gguf\nSYSTEM "Be brief."\nPARAMETER stop <|im_end|>\n')
    (folder / "maps").mkdir(exist_ok=True)
    (folder / "maps" / "mix.txt").write_text("ffn_down=q6_k\n")
    write_dat(folder / "i.dat", [("blk.0.ffn_down.weight", [1.0] * 32, 1)], chunk_count=1, dataset="c.txt")


_CONFIG_SEED = """\
[publish]
namespace = "lab"
to = "bundle"
bundle_dir = "dist"
retry_seconds = 5
insecure = false

[models.tiny]
description = "tiny"
system = "Be brief."
license = ["MIT", { file = "Modelfile" }]
messages = [{ role = "user", content = "hi" }, { role = "assistant", content = "hello" }]
parameters = { temperature = 0.7, stop = ["<|im_end|>"], num_ctx = 2048, use_mmap = true }

[models.tiny.variants.q4]
gguf = "tiny.gguf"
family = "qwen2.5"

[models.tiny.variants.custom]
tag = "custom-1.0"
gguf = "tiny.gguf"
modelfile = "Modelfile"

[models.tiny.variants.built]
build = { base = "tiny.gguf", map = "maps/mix.txt", base_type = "Q4_K_M", imatrix = "i.dat" }

[models.other.variants.pkg]
build = { base = "pkg:gemma3-270m-f16", recipe = "uniform", options = { type = "Q4_K" } }
"""


def _config_file_seeds() -> list[bytes]:
    root = Path(__file__).resolve().parent.parent / "examples"
    return [_CONFIG_SEED.encode()] + [p.read_bytes() for p in sorted(root.glob("*/gl.toml"))]


@target("gl-toml", ".toml", _config_file_seeds, text=True, prepare=_prepare_project)
def _run_gl_toml(path: Path):
    """What ``gl check`` does: load and check every key, then lint each declared Modelfile."""
    from gl_plugins.project.config import load_config
    from gl_plugins.publish.preflight import lint_declared

    cfg = load_config(path)
    lint_declared(cfg)
    return cfg


# ---------------------------------------------------------------- Ollama model names

def _name_seeds() -> list[bytes]:
    return [s.encode() for s in ("gemma4-turbo:e4b", "lab/gemma3-270m:q4", "example.com:5000/lab/model_x:v1.0",
                                 "https://registry.ollama.ai/library/llama3:latest", "qwen2.5", "_a/b_c:D-1")]


@target("ollama-name", ".name", _name_seeds, text=True, names_input=True)
def _run_name(path: Path):
    """``parse_name`` on the value; a name it accepts reads back the same from its spellings."""
    from gl_plugins.publish.names import parse_name

    value = path.read_bytes().decode("utf-8", "surrogateescape")
    n = parse_name(value)
    for spelling in (n.full(), n.short(), str(n)):
        if not parse_name(spelling).same(n):
            raise AssertionError(f"{value!r} parsed to {n.full()!r}, but {spelling!r} reads back differently")
    return n
