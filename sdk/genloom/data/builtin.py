"""The data sources that ship with genloom, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from genloom.data import images, text
from genloom.data.types import DataSource
from genloom.hookspecs import hookimpl


@hookimpl
def register_data_sources(register: Callable[[DataSource], None]) -> None:
    register(
        DataSource(
            "digits",
            images.load_digits,
            "8x8 handwritten digits (1,797 images, labels 0-9) from scikit-learn; digits:16 or digits:32 upscales them",
            "SIZE",
            argument_required=False,
        )
    )
    register(
        DataSource(
            "image-folder", images.load_image_folder, "PNG/JPEG files; sub-folders, if any, are class labels", "PATH"
        )
    )
    register(DataSource("npz", images.load_npz, "a .npz with an 'images' array and optional 'labels'", "PATH"))
    register(
        DataSource("text", text.load_text_files, "a UTF-8 text file, or a folder of .txt/.md files", "PATH", "text")
    )
    register(
        DataSource("pydoc", text.load_pydoc, "the English text of Python's documentation (pydoc_data)", "", "text")
    )
    register(
        DataSource(
            "docstrings",
            text.load_docstrings,
            "the docstrings of an installed package's public names, e.g. docstrings:numpy",
            "PACKAGE",
            "text",
        )
    )
