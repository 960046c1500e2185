"""The llama.cpp tools gl drives: finding them, building them, running them.

Tools are looked up in ``$GL_LLAMA_CPP`` (a folder, or its ``bin/``), then on
``PATH``, then in gl's cache. ``install()`` builds them from the llama.cpp
sources vendored in the PyPI sdist of ``llama-cpp-python`` (pinned), with
CMake and ninja, for a portable x86-64 level (AVX2/FMA/F16C, no AVX-512 or
AMX, no ``-march=native``), because native builds of ggml crash on these
machines with quantized models.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from gl_plugins.errors import ToolError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity", "llama-completion")
TYPES_HELPER = "gl-ggml-types"
QUANT_ERROR_HELPER = "gl-quant-error"
# gl's own programs, built against ggml with the tools (their C sources are in gl_plugins/data)
HELPERS = {TYPES_HELPER: "gl_ggml_types.c", QUANT_ERROR_HELPER: "gl_quant_error.c"}
# threads for every tool gl runs; $GL_THREADS overrides (1 is much faster on a machine whose cores are busy)
THREADS = 2

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON", "-DGGML_AVX512=OFF", "-DGGML_OPENMP=OFF",
    "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
]


def default_threads() -> int:
    """Threads for llama-quantize, llama-perplexity and llama-completion: $GL_THREADS, else :data:`THREADS`."""
    raw = os.environ.get("GL_THREADS", "").strip()
    try:
        return max(1, int(raw)) if raw else THREADS
    except ValueError:
        from gl_plugins.errors import GLError

        raise GLError(f"GL_THREADS must be a whole number of threads, not {raw!r}") from None


def cache_root() -> Path:
    root = os.environ.get("GL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "gl"


def install_dir() -> Path:
    return cache_root() / "llama.cpp" / LLAMA_CPP_PYTHON_VERSION


def _candidates(name: str):
    env = os.environ.get("GL_LLAMA_CPP")
    if env:
        for d in (Path(env), Path(env) / "bin", Path(env) / "build" / "bin"):
            yield d / name
    on_path = shutil.which(name)
    if on_path:
        yield Path(on_path)
    yield install_dir() / "bin" / name


def find_tool(name: str, required: bool = True) -> Path | None:
    for c in _candidates(name):
        if c.is_file() and os.access(c, os.X_OK):
            return c
    if required:
        raise ToolError(f"{name} not found in $GL_LLAMA_CPP, on PATH or in {install_dir() / 'bin'}; "
                        f"run `gl toolchain install` to build it")
    return None


def found_tools() -> dict[str, Path | None]:
    return {t: find_tool(t, required=False) for t in TOOLS}


def tool_version(path: Path) -> str:
    try:
        r = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    m = re.search(r"version:\s*(.+)", r.stdout + r.stderr)
    return m.group(1).strip() if m else "unknown"


def load_type_table() -> bool:
    """Use the type table of the build gl drives, when its helper is there."""
    from gl_plugins.ggml_types import load_build_table

    table = install_dir() / "ggml-types.json"
    helper = find_tool(TYPES_HELPER, required=False)
    if helper and not table.exists():
        try:
            out = subprocess.run([str(helper)], capture_output=True, text=True, timeout=30, check=True).stdout
            from gl_plugins.atomic import atomic_write

            atomic_write(table, out, parents=True)
        except (OSError, subprocess.SubprocessError):
            return False
    if table.exists():
        load_build_table(table)
        return True
    return False


# ---------------------------------------------------------------- building

def _download_sdist(dest: Path, echo) -> Path:
    cached = sorted(dest.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if cached:
        return cached[0]
    dest.mkdir(parents=True, exist_ok=True)
    echo(f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist (about 77 MB) with pip ...")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", tmp]
        r = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(tmp).glob("*.tar.gz"))
        if not files:
            raise ToolError("pip could not download the llama-cpp-python sdist: "
                            + (r.stderr.strip().splitlines() or ["no output"])[-1])
        target = dest / files[0].name
        os.replace(files[0], target)
    return target


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise ToolError(f"{sdist}: holds no vendor/llama.cpp; not the expected sdist")
        for m in members:
            m.name = m.name[len(prefix):]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=[m for m in members if m.name], filter="data")
        else:  # Python < 3.10.12 has no extraction filters
            tar.extractall(dest, members=[m for m in members if m.name and not m.issym()])
    return dest


def run_lines(cmd: list[str], on_line=None, cwd: Path | None = None) -> None:
    """Run a program in a process group of its own, passing each line it prints (stdout and stderr)
    to ``on_line``; ToolError with the last lines on failure. An interrupt, or an exception raised by
    ``on_line``, stops the program and everything it started."""
    from gl_plugins.interrupts import popen_group, stop_group

    proc = popen_group(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       text=True, errors="replace")
    tail: list[str] = []
    try:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if on_line is not None:
                on_line(line)
    except BaseException:  # an interrupt reaches gl alone: stop the program (cmake: ninja, compilers) with it
        stop_group(proc)
        raise
    finally:
        proc.stdout.close()
    rc = proc.wait()
    if rc != 0:
        why = f"was killed by signal {-rc}" if rc < 0 else f"failed with status {rc}"
        raise ToolError(f"`{' '.join(map(str, cmd[:3]))} …` {why}:\n" + "\n".join(tail))


def _run_build(cmd: list[str], cwd: Path, progress=None) -> None:
    """Run a build step; ``progress(done, total)`` follows ninja's ``[n/N]`` lines."""
    def on_line(line: str) -> None:
        m = re.match(r"\[(\d+)/(\d+)\]", line)
        if m and progress is not None:
            progress(int(m.group(1)), int(m.group(2)))

    run_lines(cmd, on_line, cwd)


def _installed(bin_dir: Path) -> bool:
    return all((bin_dir / t).exists() for t in (*TOOLS, *HELPERS))


@contextlib.contextmanager
def _install_lock(root: Path, echo):
    """One build at a time per cache: a second gl waits for the first, then uses its tools.

    The lock file sits in the cache root, beside the llama.cpp folder, so that folder holds only
    finished builds.
    """
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".llama.cpp.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"another gl is building llama.cpp in {root / 'llama.cpp'}; waiting for it ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install(force: bool = False, jobs: int | None = None, echo=print) -> Path:
    """Build the llama.cpp tools into the cache; returns the bin folder.

    Concurrent installs into one cache are serialised by a lock; the one that waited finds the
    tools in place and returns them.
    """
    final = install_dir()
    bin_dir = final / "bin"
    if not force and _installed(bin_dir):
        return bin_dir
    with _install_lock(cache_root(), echo):
        if not force and _installed(bin_dir):  # built by the gl we waited for
            return bin_dir
        return _install(final, bin_dir, jobs, echo)


def _install(final: Path, bin_dir: Path, jobs: int | None, echo) -> Path:
    from tqdm import tqdm

    if not shutil.which("cmake"):
        raise ToolError("cmake is needed to build llama.cpp; install it (pip install cmake)")
    ninja = _ninja()
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise ToolError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
    root = cache_root()
    sdist = _download_sdist(root / "downloads", echo)
    final.parent.mkdir(parents=True, exist_ok=True)
    # every leftover of an interrupted build is cleaned before a new one
    for stale in final.parent.glob(f".build-{LLAMA_CPP_PYTHON_VERSION}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".build-{LLAMA_CPP_PYTHON_VERSION}-"))
    try:
        src = _extract_llama_cpp(sdist, work / "src")
        build = work / "build"
        echo(f"configuring llama.cpp (portable AVX2 build) in {work} ...")
        _run_build(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={ninja}", *CMAKE_FLAGS], work)
        jobs = jobs or os.cpu_count() or 2
        with tqdm(desc="building llama.cpp", unit="step", total=1, file=sys.stderr, disable=None) as bar:
            logged = [0]

            def progress(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()
                if bar.disable and done * 10 // total > logged[0]:  # no terminal: a line per 10 %
                    logged[0] = done * 10 // total
                    echo(f"building llama.cpp: {done}/{total} steps")

            _run_build(["cmake", "--build", str(build), "-j", str(jobs), "--target", *TOOLS], work, progress)
        staged = work / "out" / "bin"
        staged.mkdir(parents=True)
        for t in TOOLS:
            shutil.copy2(build / "bin" / t, staged / t)
        for helper in HELPERS:
            _build_helper(helper, src, build, staged / helper)
        (work / "out" / "VERSION").write_text(LLAMA_CPP_PYTHON_VERSION + "\n")
        if final.exists():  # moved aside, not deleted first: the old tools stay until the new ones are in place
            os.replace(final, work / "old")
        os.replace(work / "out", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (final / "ggml-types.json").unlink(missing_ok=True)
    load_type_table()
    return bin_dir


def _ninja() -> str:
    """ninja from PATH, else the one the ``ninja`` PyPI package ships."""
    found = shutil.which("ninja")
    if found:
        return found
    try:
        import ninja  # the PyPI wheel carries the binary

        path = Path(ninja.BIN_DIR) / "ninja"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    raise ToolError("ninja is needed to build llama.cpp; install it (pip install ninja)")


def helper_source(name: str) -> Path:
    """The C source of one of gl's ggml helpers (package data)."""
    from importlib.resources import files

    return Path(str(files("gl_plugins") / "data" / HELPERS[name]))


def _build_helper(name: str, src: Path, build: Path, out: Path) -> None:
    """Compile one of gl's helpers against the ggml of this build (libggml-base.a, its headers).

    The helper is told the sha256 of its source, which it prints with ``--version``."""
    from gl_plugins.digests import sha256_file

    c_src = helper_source(name)
    base = [p for p in (build / "ggml" / "src").rglob("libggml-base.a")]
    cc = shutil.which(os.environ.get("CC", "cc")) or "cc"
    cmd = [cc, "-O2", f"-DGL_SOURCE_SHA256=\"{sha256_file(c_src)}\"", "-I", str(src / "ggml" / "include"),
           str(c_src), *map(str, base), "-lm", "-lpthread", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        cmd += ["-lstdc++"]  # the C++ pieces of ggml-base need the C++ runtime
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise ToolError(f"could not build gl's ggml helper {name}: " + r.stderr.strip()[-500:])


# ---------------------------------------------------------------- running

def run_tool(name: str, args: list[str], *, timeout: float | None = None, check: bool = True,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a llama.cpp tool and capture its output; ToolError on failure when ``check``."""
    exe = find_tool(name)
    full_env = {**os.environ, **(env or {})}
    try:
        r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                           env=full_env, errors="replace")
    except subprocess.TimeoutExpired:
        raise ToolError(f"{name} did not finish within {timeout:.0f} s") from None
    if check and r.returncode != 0:
        raise ToolError(f"{name} failed with status {r.returncode}: {last_error_line(r.stdout + r.stderr)}")
    return r


def last_error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"error|failed|cannot|missing|invalid", ln, re.I):
            return ln
    return lines[-1] if lines else "no output"
