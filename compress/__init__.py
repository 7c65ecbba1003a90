"""exaone-compression: build compressed EXAONE variants and gate each release on evidence."""

__version__ = "0.1.0"
