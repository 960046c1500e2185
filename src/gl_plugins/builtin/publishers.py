"""Built-in publishers: ``ollama`` (a server, through the official client) and ``bundle`` (an offline folder)."""

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def gl_register_publishers(register):
    from ..publish_bundle import BundlePublisher
    from ..publish_ollama import OllamaPublisher

    register(OllamaPublisher())
    register(BundlePublisher())
