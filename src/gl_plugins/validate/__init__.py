"""Validating a quantized GGUF: the validate call, collapse detection, the built-in validators.

Takes the quantized file, its base and its plan; gives findings and figures (bpw, perplexity ...).
"""
