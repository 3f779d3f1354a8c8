"""The package version, importable from any room of the house."""

__version__ = "0.1.0"
