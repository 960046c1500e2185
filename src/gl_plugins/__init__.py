"""gl: quantize open LLMs to very few bits with llama.cpp, check the result, ship it through Ollama."""

__version__ = "0.1.0"
