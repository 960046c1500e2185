"""Publishing a gl.toml variant: preparing the request, the ollama and bundle publishers, names, retries.

Takes a variant whose GGUF validated; gives an Ollama model (or an offline bundle) and what was done.
"""
