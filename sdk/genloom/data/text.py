"""Text data sources: the user's own files, Python's documentation that ships with Python, and the docstrings of an
installed package."""

from __future__ import annotations

from pathlib import Path

from genloom.data.types import TextData
from genloom.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")


def load_text_files(argument: str | None) -> TextData:
    """``text:PATH``: one UTF-8 file, or every .txt/.md file under a folder (sorted, joined by blank lines)."""
    path = Path(argument or "")
    if not path.exists():
        raise DataError(f"text data: '{path}' does not exist; give a .txt/.md file or a folder of them")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"text data: no .txt or .md files under '{path}'")
    documents = []
    for file in files:
        try:
            documents.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(f"text data: '{file}' is not UTF-8 (byte {exc.start}); convert it to UTF-8") from None
    return TextData("\n\n".join(documents), source=f"text:{path}")


def load_pydoc(argument: str | None) -> TextData:
    """``pydoc``: the help topics of Python's own documentation, about 460,000 characters of English."""
    from pydoc_data.topics import topics

    return TextData("\n\n".join(topics[key] for key in sorted(topics)), source="pydoc")


def load_docstrings(argument: str | None) -> TextData:
    """``docstrings:PACKAGE``: the docstrings of an installed package's public top-level names (``numpy``,
    ``sklearn``, ...), in name order, each once; a corpus in the style of API reference, offline."""
    import importlib
    import inspect

    name = argument or ""
    try:
        package = importlib.import_module(name)
    except ImportError:
        raise DataError(f"docstrings: no installed package '{name}'; install it, or name another") from None
    documents, seen = [], set()
    for attribute in sorted(dir(package)):
        member = getattr(package, attribute, None) if not attribute.startswith("_") else None
        if member is None or id(member) in seen or isinstance(member, (int, float, str, bytes)):
            continue
        seen.add(id(member))
        doc = inspect.getdoc(member)
        if doc:
            documents.append(doc)
    if not documents:
        raise DataError(f"docstrings: '{name}' has no documented public names; name another package")
    return TextData("\n\n".join(documents), source=f"docstrings:{name}")
