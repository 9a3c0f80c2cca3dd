"""ilrma: determined blind source separation with ILRMA."""

__version__ = "0.1.0"
