"""The package's version and folder (one place: the package's face, run keys and manifests read them)."""

from pathlib import Path

__version__ = "0.1.0"
PACKAGE_DIR = Path(__file__).resolve().parent  # the installed package's folder (its source is hashed into run keys)
