"""The package version, in one place (imported by the package root and by modules below it)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
