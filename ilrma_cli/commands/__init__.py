"""Subcommands of ``ilrma``, one module each."""
