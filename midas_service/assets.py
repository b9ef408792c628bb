"""The package's data: ``templates/`` and ``static/`` (the page, its scripts, the example photos).

An installed package holds them as package data (``setup.py``), found through
``importlib.resources``; a source checkout that was not installed has them at the top of the
repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parent.parent


def folder(name: str) -> Path:
    """``templates`` or ``static`` (or a folder below them, ``static/examples``)."""
    installed = Path(str(resources.files("midas_service").joinpath(name)))
    return installed if installed.is_dir() else SOURCE_TREE / name


def example_photos() -> Path:
    """The page's example photos, which the bf16 deviation gate also measures on."""
    return folder("static/examples")
