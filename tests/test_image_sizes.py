"""What both image plugins take: upscaled digits, a folder of 32x32 RGB pictures; labels for the conditional ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import genloom
from genloom.errors import DataError

SMALL = {"batch_size": 16, "sample_every": 2, "eval_every": 0}
SMALL_BY_GENERATOR = {
    "gan": {"width": 8, "latent_dim": 8},
    "cgan": {"width": 8, "latent_dim": 8},
    "vae": {"width": 8, "latent_dim": 4},
    "cvae": {"width": 8, "latent_dim": 4},
}


def write_rgb_folder(root: Path, per_class: int = 12) -> None:
    """32x32 RGB pictures in two class folders: red discs and blue squares at random places."""
    rng = np.random.default_rng(0)
    for label, shape in enumerate(("discs", "squares")):
        (root / shape).mkdir(parents=True)
        for index in range(per_class):
            picture = Image.new("RGB", (32, 32), (240, 240, 230))
            x, y = rng.integers(2, 18, size=2)
            box = (int(x), int(y), int(x) + 12, int(y) + 12)
            draw = ImageDraw.Draw(picture)
            draw.ellipse(box, fill=(200, 30, 30)) if label == 0 else draw.rectangle(box, fill=(30, 30, 200))
            picture.save(root / shape / f"{index}.png")


@pytest.mark.parametrize("generator", ["gan", "cvae"])
def test_training_on_digits_upscaled_to_16_pixels(tmp_path: Path, generator: str) -> None:
    genloom.train(generator, "digits:16", tmp_path, progress=False, steps=4, **SMALL, **SMALL_BY_GENERATOR[generator])
    result = genloom.load(tmp_path).generate(n=3, seed=0)
    assert result.array.shape == (3, 16, 16, 1)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["samples-000002.png", "samples-000004.png"]


@pytest.mark.parametrize("generator", ["cgan", "vae"])
def test_training_on_a_folder_of_32px_rgb_pictures(tmp_path: Path, generator: str) -> None:
    write_rgb_folder(tmp_path / "pictures")
    out = tmp_path / "model"
    genloom.train(
        generator,
        f"image-folder:{tmp_path / 'pictures'}",
        out,
        progress=False,
        steps=4,
        **SMALL,
        **SMALL_BY_GENERATOR[generator],
    )
    model = genloom.load(out)
    labels = {"labels": [0, 1]} if generator == "cgan" else {}
    result = model.generate(n=4, seed=0, **labels)
    assert result.array.shape == (4, 32, 32, 3) and result.images[0].mode == "RGB"
    assert model.info()["facts"]["class_names"] == ["discs", "squares"]
    grid = Image.open(out / "samples" / "samples-000004.png")
    assert grid.mode == "RGB" and grid.size == (8 * 33 + 1, 8 * 33 + 1)


@pytest.mark.parametrize("generator", ["cgan", "cvae"])
def test_conditional_generators_need_labelled_data(tmp_path: Path, generator: str) -> None:
    np.savez(tmp_path / "unlabelled.npz", images=np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(
        DataError, match=f"'{generator}' is conditional and needs labelled data, but 'npz:.*' has no labels"
    ):
        genloom.train(generator, f"npz:{tmp_path / 'unlabelled.npz'}", tmp_path / "out", progress=False)


@pytest.mark.parametrize("generator", ["gan", "vae"])
def test_unsupported_image_sizes_are_a_clear_error(tmp_path: Path, generator: str) -> None:
    np.savez(tmp_path / "odd.npz", images=np.zeros((4, 10, 10), np.uint8))
    with pytest.raises(DataError, match="images are 10x10; it needs square images of 8, 16, 32 or 64 pixels"):
        genloom.train(generator, f"npz:{tmp_path / 'odd.npz'}", tmp_path / "out", progress=False)
