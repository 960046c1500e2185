"""Benchmark: publishing a 2 GB GGUF to a local Ollama-compatible server.

Measured in one run, on the same file (warm page cache for every reader):

- ``sha256sum`` throughput (the reference);
- gl's hashing throughput, and its ratio to sha256sum (target >= 0.70);
- upload throughput of the first publish, and its ratio to sha256sum (target >= 0.70);
- peak RSS of the publishing process (target < 150 MB);
- wall time of the second publish of the unchanged file (target < 1 s): the
  publishing step in a fresh process, and the whole ``gl publish`` command
  (its validation findings are cached per file, so the second run does not
  start llama.cpp; the bench file is not a runnable model, so it is
  published with ``--force``).

The server is the test suite's fake Ollama (tests/ollama_fake.py) in its own
process. Usage: ``python bench/publish.py [--size-gb 2] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"tok{i}" for i in range(60)]
CHILD = r"""
import json, sys, time
t0 = time.monotonic()
from gl_plugins import digests
from gl_plugins.project.config import load_config
from gl_plugins.publish.prepare import build_request, options_from
from gl_plugins.publish.ollama import OllamaPublisher
cfg = load_config(sys.argv[1])
variant = cfg.variant("bench:big")
t_hash = time.monotonic()
_, was_cached = digests.digest(variant.gguf)
t_hash = time.monotonic() - t_hash
opts = options_from(cfg.publish, host=sys.argv[2], progress=False)
req = build_request(cfg, variant, opts, echo=lambda m: None)
result = OllamaPublisher().publish(req)
print(json.dumps({"hash_seconds": t_hash, "hash_cached": was_cached, "size": req.size,
                  "upload_seconds": result.seconds.get("upload"), "unchanged": result.unchanged,
                  "created": result.created, "in_process_seconds": time.monotonic() - t0}))
"""


def write_gguf(path: Path, size: int) -> None:
    import gguf
    import numpy as np

    n = size // 4
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("gl-bench")
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(TOKENS)
    w.add_token_types([1] * len(TOKENS))
    w.add_eos_token_id(1)
    w.add_tensor_info("token_embd.weight", [len(TOKENS), 32], np.dtype(np.float32), len(TOKENS) * 32 * 4)
    w.add_tensor_info("pad.weight", [n], np.dtype(np.float32), n * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    block = os.urandom(16 << 20)
    with open(path, "ab") as f:
        f.write(b"\0" * (-f.tell() % 32))
        f.write(np.zeros((len(TOKENS), 32), dtype=np.float32).tobytes())
        f.write(b"\0" * (-f.tell() % 32))
        left = n * 4
        while left:
            chunk = block[:min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)


def run_child(args: list[str], env: dict) -> tuple[dict, float, int]:
    """(the child's JSON line, wall seconds, peak RSS in bytes) of one publishing process."""
    start = time.monotonic()
    p = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, text=True)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"publishing process failed ({p.returncode}):\n{err}")
    return json.loads(out.strip().splitlines()[-1]), wall, usage.ru_maxrss * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gl-bench-publish-"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 1e9) // 4 * 4
    gguf_path = work / "big.gguf"
    print(f"writing a {size / 1e9:.2f} GB GGUF to {gguf_path}", file=sys.stderr)
    write_gguf(gguf_path, size)
    (work / "gl.toml").write_text('[models.bench.variants.big]\ngguf = "big.gguf"\n')
    env = {**os.environ, "GL_DIGEST_CACHE": str(work / "digests.json"), "PYTHONPATH": str(REPO / "src")}
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "ollama_fake.py"), "--root", str(work / "srv")],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        file_size = gguf_path.stat().st_size
        subprocess.run(["cat", str(gguf_path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        t = time.monotonic()
        subprocess.run(["sha256sum", str(gguf_path)], stdout=subprocess.DEVNULL, check=True)
        ref = file_size / (time.monotonic() - t)
        first, first_wall, first_rss = run_child([str(work / "gl.toml"), url], env)
        second, second_wall, second_rss = run_child([str(work / "gl.toml"), url], env)
        cli = [sys.executable, "-m", "gl_plugins", "publish", "bench:big", "--config", str(work / "gl.toml"),
               "--host", url, "--to", "ollama", "--force", "--json"]
        env["GL_VALIDATION_CACHE"] = str(work / "validations")
        subprocess.run(cli, env=env, capture_output=True, check=True)  # validates once, finds the model unchanged
        t = time.monotonic()
        p = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cli_out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        cli_wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        cli_cpu = usage.ru_utime + usage.ru_stime
        again = json.loads(cli_out)
    finally:
        server.terminate()
        server.wait()
    hash_rate = file_size / first["hash_seconds"]
    upload_rate = file_size / first["upload_seconds"]
    peak = max(first_rss, second_rss)
    rows = [
        ("file", f"{file_size / 1e9:.2f} GB"),
        ("sha256sum", f"{ref / 1e6:.0f} MB/s"),
        ("gl hashing", f"{hash_rate / 1e6:.0f} MB/s, ratio {hash_rate / ref:.2f} (target >= 0.70)"),
        ("upload (first publish)", f"{upload_rate / 1e6:.0f} MB/s, ratio {upload_rate / ref:.2f} (target >= 0.70)"),
        ("first publish", f"{first_wall:.1f} s"),
        ("peak RSS", f"{peak / 1e6:.0f} MB (target < 150 MB)"),
        ("second publish step", f"{second_wall:.2f} s process wall, {second['in_process_seconds']:.2f} s in "
                                f"process, {'unchanged' if second['unchanged'] else 'CHANGED'}"),
        ("second gl publish", f"{cli_wall:.2f} s wall, {cli_cpu:.2f} s CPU, "
                              f"{'unchanged' if again['result']['unchanged'] else 'CHANGED'} (target < 1 s)"),
        ("load average", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"),
    ]
    for k, v in rows:
        print(f"{k:>24}: {v}")
    ok = (hash_rate / ref >= 0.70 and upload_rate / ref >= 0.70 and peak < 150e6 and cli_wall < 1.0
          and second["unchanged"] and second["hash_cached"] and again["result"]["unchanged"])
    print(json.dumps({"sha256sum_Bps": ref, "hash_ratio": hash_rate / ref, "upload_ratio": upload_rate / ref,
                      "peak_rss_bytes": peak, "second_publish_seconds": second_wall,
                      "second_gl_publish_seconds": cli_wall, "second_gl_publish_cpu_seconds": cli_cpu,
                      "load_average": os.getloadavg()[0], "pass": ok}))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
