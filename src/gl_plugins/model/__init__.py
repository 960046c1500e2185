"""Reading a model: GGUF headers (split sets too), the inspect report, tensor-name helpers.

Takes a GGUF file or a config.json's widths; gives tensors, types and sizes, never tensor data.
"""
