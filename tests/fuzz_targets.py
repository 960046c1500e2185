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


TARGETS: dict[str, Target] = {}


def target(name: str, suffix: str, seeds: Callable[[], list[bytes]], text: bool = False):
    def deco(run):
        TARGETS[name] = Target(name, suffix, functools.cache(seeds), run, text)
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
        if str(path) not in str(e) and path.name not in str(e):
            return f"GLError does not name the file: {e}"
    except RecursionError:
        return "RecursionError"
    except Exception as e:  # noqa: BLE001 - any other exception is a failure
        return f"{type(e).__name__}: {e}"
    return None


# ---------------------------------------------------------------- targets

def _gguf_seeds() -> list[bytes]:
    from gl_plugins.synth import SynthSpec, write_model

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
