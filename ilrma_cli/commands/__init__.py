"""The subcommands of ``ilrma``."""
