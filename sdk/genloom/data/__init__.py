"""Training data: what a data source hands to a generator.

Data sources are registered through the ``register_data_sources`` hook; the
built-in ones (``digits``, ``image-folder:PATH``, ``npz:PATH``, ``text:PATH``,
``pydoc``) live in :mod:`genloom.data.builtin`. Nothing here downloads anything.
"""

from genloom.data.types import Dataset, DataSource, ImageData, TextData

__all__ = ["DataSource", "Dataset", "ImageData", "TextData"]
