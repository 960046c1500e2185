"""gl: quantize open LLMs to very few bits with llama.cpp, check the result, ship it through Ollama.

The public API, for plugins and programs (``from gl_plugins import hookimpl, Prediction``). Names are
imported on first use, so ``import gl_plugins`` (and ``gl --help``) stays cheap.
"""

__version__ = "0.1.0"

# name -> module that defines it
_API = {
    "hookimpl": "gl_plugins.hookspecs",
    "GLError": "gl_plugins.errors",
    "InputError": "gl_plugins.errors",
    "Finding": "gl_plugins.findings",
    "ModelFacts": "gl_plugins.facts",
    "Tensor": "gl_plugins.facts",
    "load_facts": "gl_plugins.facts",
    "get_type": "gl_plugins.ggml_types",
    "get_ftype": "gl_plugins.ggml_types",
    "default_type": "gl_plugins.ggml_types",
    "Prediction": "gl_plugins.predict.predictions",
    "IMatrix": "gl_plugins.imatrix.formats",
    "Rule": "gl_plugins.plan.resolve",
    "TensorPlan": "gl_plugins.plan.resolve",
    "Assignment": "gl_plugins.plan.resolve",
    "resolve": "gl_plugins.plan.resolve",
    "Skip": "gl_plugins.validate.run",
    "ValidationContext": "gl_plugins.validate.run",
    "PublishOptions": "gl_plugins.publish.prepare",
    "PublishRequest": "gl_plugins.publish.prepare",
    "PublishResult": "gl_plugins.publish.prepare",
    "Predictor": "gl_plugins.host.protocols",
    "Recipe": "gl_plugins.host.protocols",
    "Auditor": "gl_plugins.host.protocols",
    "Validator": "gl_plugins.host.protocols",
    "Publisher": "gl_plugins.host.protocols",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'gl_plugins' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
