"""Folders of files as labelled data: files at the top of a folder (unlabelled), or in class sub-folders (one label
per sub-folder, in name order). What ``image-folder:PATH`` reads, and any plugin's source of files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genloom.errors import DataError


@dataclass(frozen=True)
class LabelledFiles:
    """The files of a folder; ``labels`` (one class index per file) and ``class_names`` None when unlabelled."""

    files: list[Path]
    labels: np.ndarray | None
    class_names: list[str] | None


def labelled_files(root: Path, suffixes: tuple[str, ...], *, source: str, what: str) -> LabelledFiles:
    """The files ending in ``suffixes`` (any case) at the top of ``root`` or in its class sub-folders, not both.

    ``source`` (``image-folder``) and ``what`` (``PNG/JPEG files``) name them in the one-line ``DataError`` for a
    missing folder, one with files both at its top and in sub-folders, or one without any.
    """
    if not root.is_dir():
        raise DataError(f"{source}: '{root}' is not a folder; give a folder of {what}")
    loose = files_in(root, suffixes)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and files_in(d, suffixes))
    if loose and class_dirs:
        raise DataError(
            f"{source}: '{root}' has {what} both at its top and in sub-folders; put every file in a class "
            "sub-folder, or none"
        )
    if not loose and not class_dirs:
        raise DataError(f"{source}: no {'/'.join(suffixes)} files in '{root}' or its sub-folders; add some")
    if loose:
        return LabelledFiles(loose, None, None)
    per_class = [files_in(d, suffixes) for d in class_dirs]
    labels = np.array([label for label, files in enumerate(per_class) for _ in files], dtype=np.int64)
    return LabelledFiles([f for files in per_class for f in files], labels, [d.name for d in class_dirs])


def files_in(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files directly in ``folder`` whose suffix (any case) is one of ``suffixes``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
