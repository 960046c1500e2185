#!/usr/bin/env python3
"""Time and memory gl spends refusing each hostile file of the test corpora.

    python bench/hostile.py [--repeat 5]

Covers the hostile GGUF headers (tests/hostile.py), the hostile imatrix files
(tests/hostile_imatrix.py) and split sets naming missing or impossible parts.
Prints, per file, the median and the slowest of the repeats in milliseconds
(the slowest shows what a busy machine adds), the tracemalloc peak in KiB and
whether gl refused it with its own error naming the file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import hostile  # noqa: E402
import hostile_imatrix  # noqa: E402
from gl_plugins.errors import InputError  # noqa: E402
from gl_plugins.model.gguf_header import read_header  # noqa: E402
from gl_plugins.imatrix.formats import read_imatrix  # noqa: E402


def _split_cases(folder: Path) -> dict[str, Path]:
    from synth import SynthSpec, write_model

    one = folder / "one.gguf"
    write_model(one, SynthSpec(n_layer=1, hidden=64, ffn=128, vocab=32))
    cases = {"split_missing_part": ["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"],
             "split_99999_parts": ["x-00001-of-99999.gguf"], "split_part_of_zero": ["z-00001-of-00000.gguf"]}
    out = {}
    for name, files in cases.items():
        for f in files:
            shutil.copy(one, folder / f)
        out[name] = folder / files[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [(n, p, read_header) for n, (p, _) in hostile.write_corpus(tmp / "gguf").items()]
        cases += [(n, p, read_imatrix) for n, (p, _) in hostile_imatrix.write_corpus(tmp / "imatrix").items()]
        (tmp / "split").mkdir()
        cases += [(n, p, read_header) for n, p in _split_cases(tmp / "split").items()]
        for name, path, reader in cases:
            times, worst_peak, ok = [], 0, True
            for _ in range(args.repeat):
                exc, seconds, peak = hostile.refusal_cost(reader, path)
                times.append(seconds)
                worst_peak = max(worst_peak, peak)
                ok &= isinstance(exc, InputError) and str(path) in str(exc)
            rows.append((name, statistics.median(times) * 1000, max(times) * 1000, worst_peak / 1024, ok))
    print(f"{'file':<32} {'median ms':>9} {'max ms':>8} {'peak KiB':>9}  refused")
    for name, med, worst, kib, ok in rows:
        print(f"{name:<32} {med:>9.2f} {worst:>8.2f} {kib:>9.1f}  {'yes' if ok else 'NO'}")
    print(f"{len(rows)} files; slowest median {max(r[1] for r in rows):.2f} ms, slowest run {max(r[2] for r in rows):.2f} "
          f"ms, largest peak {max(r[3] for r in rows):.1f} KiB")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
