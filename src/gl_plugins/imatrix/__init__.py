"""Importance matrices: the GGUF and legacy .dat formats, the coverage auditor, the remedy for gaps.

Takes an imatrix file, the model and the planned types; gives every coverage gap with its cause, as findings.
"""
