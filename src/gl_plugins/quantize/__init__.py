"""Quantizing: the real llama-quantize run with an explicit plan, and the provenance beside its output.

Takes a GGUF and a TensorPlan; gives the quantized GGUF and FILE.gl.json recording what was intended.
"""
