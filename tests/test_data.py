"""The built-in data sources: shipped data, the user's folders and files, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genloom.data.types import MAX_CLASSES, ImageData
from genloom.errors import DataError, PluginError
from genloom.plugins import get_registry
from tests.conftest import assert_one_line_error, cli_in_process


def open_data(spec: str):
    return get_registry().open_data(spec)


def test_digits_ship_with_an_installed_package() -> None:
    data = open_data("digits")
    assert data.images.shape == (1797, 1, 8, 8)
    assert 0.0 == data.images.min() and data.images.max() == 1.0
    assert data.class_names == [str(d) for d in range(10)] and set(data.labels) == set(range(10))


def test_digits_upscale_to_larger_sizes_keeping_labels() -> None:
    small, large = open_data("digits"), open_data("digits:32")
    assert large.images.shape == (1797, 1, 32, 32) and large.source == "digits:32"
    assert 0.0 <= large.images.min() and large.images.max() <= 1.0
    np.testing.assert_array_equal(small.labels, large.labels)
    # Upscaling keeps the picture: averaging 4x4 blocks gives back the 8x8 digit, roughly.
    pooled = large.images.reshape(1797, 1, 8, 4, 8, 4).mean(axis=(3, 5))
    assert np.abs(pooled - small.images).mean() < 0.05


def test_the_validation_split_is_fixed_and_disjoint() -> None:
    data = open_data("digits")
    train, validation = data.split(0.1)
    again, _ = data.split(0.1)
    assert (len(train), len(validation)) == (1618, 179) and (train.part, validation.part) == ("train", "validation")
    np.testing.assert_array_equal(train.images, again.images)
    rows = {row.tobytes() for row in train.images}
    assert not any(
        row.tobytes() in rows for row in validation.images if (data.images == row).all(axis=(1, 2, 3)).sum() == 1
    )
    assert data.split(0.0)[1] is None


def test_pydoc_is_pythons_own_english_documentation() -> None:
    data = open_data("pydoc")
    assert len(data.text) > 400_000 and "assert" in data.text


def test_docstrings_are_an_installed_packages_api_reference_and_bad_names_are_one_line() -> None:
    data = open_data("docstrings:numpy")
    assert data.source == "docstrings:numpy" and "Parameters\n----------" in data.text
    assert data.text == open_data("docstrings:numpy").text  # the same corpus every time
    for argument, fragment in (("", "needs PACKAGE"), (":no_such_package_here", "no installed package")):
        with pytest.raises(DataError, match=fragment):
            open_data(f"docstrings{argument}")


def write_png(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_image_folder_with_class_sub_folders_gives_labels(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        for i in range(3):
            write_png(tmp_path / label / f"{i}.png", (32, 32))
    write_png(tmp_path / "dog" / "big.png", (64, 48))  # resized to the common 32x32
    data = open_data(f"image-folder:{tmp_path}")
    assert data.images.shape == (7, 3, 32, 32)
    assert data.class_names == ["cat", "dog"] and list(data.labels) == [0, 0, 0, 1, 1, 1, 1]
    assert np.allclose(data.images[0, :, 0, 0], [128 / 255, 0, 127 / 255])


def test_image_folder_of_grayscale_images_has_one_channel_and_no_labels(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / f"{i}.png", (16, 16), mode="L", value=i * 60)
    data = open_data(f"image-folder:{tmp_path}")
    assert data.images.shape == (4, 1, 16, 16) and data.labels is None and data.num_classes == 0


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "is not a folder"),
        ("empty", "no .png/.jpg/.jpeg files"),
        ("mixed", "both at its top and in sub-folders"),
        ("unreadable", "cannot read"),
    ],
)
def test_image_folder_problems_are_clear(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "images"
    if layout != "missing":
        root.mkdir()
    if layout == "mixed":
        write_png(root / "a.png", (8, 8))
        write_png(root / "cls" / "b.png", (8, 8))
    if layout == "unreadable":
        (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=message):
        open_data(f"image-folder:{root}")


@pytest.mark.parametrize(
    ("images", "shape"),
    [
        (np.zeros((5, 8, 8), np.uint8), (5, 1, 8, 8)),
        (np.zeros((5, 16, 16, 3), np.uint8), (5, 3, 16, 16)),
        (np.full((5, 3, 16, 16), 0.5, np.float32), (5, 3, 16, 16)),
    ],
)
def test_npz_layouts(tmp_path: Path, images: np.ndarray, shape: tuple[int, ...]) -> None:
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(5) % 2)
    data = open_data(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.shape == shape and data.num_classes == 2


def test_npz_problems_name_the_fix(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="has no 'images' array \\(it has: pixels\\)"):
        open_data(f"npz:{tmp_path / 'x.npz'}")
    np.savez(tmp_path / "y.npz", images=np.full((2, 8, 8), 3.0))
    with pytest.raises(DataError, match="scale them to \\[0, 1\\]"):
        open_data(f"npz:{tmp_path / 'y.npz'}")
    np.savez(tmp_path / "z.npz", images=np.zeros((2, 8, 8)), labels=np.zeros(3))
    with pytest.raises(DataError, match="3 labels for 2 images"):
        open_data(f"npz:{tmp_path / 'z.npz'}")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            np.array([0, 1, 2, MAX_CLASSES]),
            f"'labels' range over 0..{MAX_CLASSES}; they must be class indices 0..K-1 (at most {MAX_CLASSES} classes)",
        ),
        (np.array([-1, 0, 1, 0]), "'labels' range over -1..1; they must be class indices 0..K-1"),
        (np.linspace(0, 1, 4), "'labels' are float64, not integers"),
        (np.array([True, False, True, False]), "'labels' are bool, not integers"),
        (np.array([0, 2, 0, 2]), "'labels' go up to 2 but no image has label 1"),
    ],
    ids=["too-many-classes", "negative", "float", "bool", "a-class-without-images"],
)
def test_npz_labels_must_be_class_indices_0_to_k_minus_1(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8), labels=labels)
    with pytest.raises(DataError, match=re.escape(f"data source 'npz:{tmp_path / 'd.npz'}': {message}")):
        open_data(f"npz:{tmp_path / 'd.npz'}")


def test_a_label_past_the_class_bound_is_one_line_on_the_cli_before_any_training(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 0, 10 * MAX_CLASSES]))
    result = cli_in_process(
        "train",
        "cgan",
        "--data",
        f"npz:{tmp_path / 'd.npz'}",
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--set",
        "width=8",
        "--set",
        "latent_dim=8",
        "--quiet",
    )
    assert_one_line_error(
        result, f"'labels' range over 0..{10 * MAX_CLASSES}", str(tmp_path / "d.npz"), "number the classes from 0"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_images_are_refused_when_the_data_is_opened(tmp_path: Path, bad: float) -> None:
    images = np.full((3, 8, 8), 0.5, np.float32)
    images[1, 2, 3] = bad
    np.savez(tmp_path / "d.npz", images=images)
    with pytest.raises(
        DataError, match=re.escape(f"npz: float 'images' in '{tmp_path / 'd.npz'}' hold NaN or infinite values")
    ):
        open_data(f"npz:{tmp_path / 'd.npz'}")
    with pytest.raises(
        DataError, match="data source 'plugin-data': images hold NaN or infinite values \\(the first at image 1\\)"
    ):
        ImageData(images[:, None], source="plugin-data")


def test_text_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("Alpha ünïcode")
    (tmp_path / "docs" / "sub" / "b.md").write_text("# Beta")
    (tmp_path / "docs" / "skip.csv").write_text("x,y")
    assert open_data(f"text:{tmp_path / 'docs'}").text == "Alpha ünïcode\n\n# Beta"
    assert open_data(f"text:{tmp_path / 'docs' / 'a.txt'}").text == "Alpha ünïcode"


def test_text_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_data(f"text:{tmp_path / 'nope'}")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="holds no text"):
        open_data(f"text:{tmp_path / 'empty.txt'}")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8"):
        open_data(f"text:{tmp_path / 'latin1.txt'}")


def test_data_source_arguments_are_checked() -> None:
    with pytest.raises(DataError, match="needs PATH: use --data npz:PATH"):
        open_data("npz")
    with pytest.raises(DataError, match="takes no argument: use --data pydoc"):
        open_data("pydoc:extra")
    with pytest.raises(DataError, match="digits: SIZE must be one of 8, 16, 32, 64 .*got 'extra'"):
        open_data("digits:extra")
    with pytest.raises(PluginError, match="no data source named 'digts' \\(did you mean 'digits'"):
        open_data("digts")


def test_a_npy_file_given_as_npz_says_how_to_save_it(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), np.float32))
    result = cli_in_process("train", "gan", "--data", f"npz:{tmp_path / 'images.npy'}", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "a .npy file", "numpy.savez")
