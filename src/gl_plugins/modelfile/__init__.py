"""Ollama Modelfiles: parsing and rendering them as Ollama does, linting them, the family templates.

Takes Modelfile text (and the GGUF it is for); gives a parsed Modelfile, findings, or the text gl publishes.
"""
