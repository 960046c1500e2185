"""The llama.cpp tools gl drives: finding or building them, running models through them, the sample models.

Takes the pinned llama-cpp-python sources and PyPI sample packages; gives working tools and real GGUFs.
"""
