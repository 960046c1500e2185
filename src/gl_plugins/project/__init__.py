"""A model repository: its gl.toml and the pre-commit hooks that check it.

Takes gl.toml and the files pre-commit hands over; gives checked variants, problems and hook exit codes.
"""
