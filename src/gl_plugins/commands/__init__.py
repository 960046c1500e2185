"""The click commands of `gl`, one module per command family, imported on use."""
