"""DCGAN: a convolutional generator and discriminator trained with the non-saturating loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

import genloom
from genloom.errors import DataError

if TYPE_CHECKING:
    import torch


class DCGANConfig(genloom.GeneratorConfig):
    """Knobs of the DCGAN generator."""

    steps: int = Field(2000, ge=1, description="Optimisation steps (one discriminator and one generator update each).")
    sample_every: int = Field(500, ge=0, description="Write a sample grid every N steps (0: only at the end).")
    latent_dim: int = Field(32, ge=1, le=1024, description="Size of the noise vector the generator starts from.")
    width: int = Field(64, ge=8, le=1024, description="Channels of the widest convolution.")
    lr_generator: float = Field(2e-4, gt=0, description="Adam learning rate of the generator.")
    lr_discriminator: float = Field(2e-4, gt=0, description="Adam learning rate of the discriminator.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of both optimizers.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 of both optimizers.")


class DCGAN(genloom.Generator):
    """Deep convolutional GAN for square images of 8, 16, 32 or 64 pixels."""

    name = "gan"
    modality = "image"
    Config = DCGANConfig
    description = "DCGAN: convolutional generator + discriminator, non-saturating loss"
    config: DCGANConfig

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        from genloom_gan.nets import upsampling_levels

        size = (self.facts["height"], self.facts["width"])
        if size[0] != size[1] or upsampling_levels(size[0]) is None:
            raise DataError(f"gan: images are {size[0]}x{size[1]}; it needs square images of 8, 16, 32 or 64 pixels (resize them)")

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_gan.nets import ConvDiscriminator, ConvGenerator

        channels, size = self.facts["channels"], self.facts["height"]
        return {
            "generator": ConvGenerator(self.config.latent_dim, channels, size, self.config.width),
            "discriminator": ConvDiscriminator(channels, size, self.config.width),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        betas = (self.config.beta1, self.config.beta2)
        return {
            "generator": torch.optim.Adam(self.modules["generator"].parameters(), self.config.lr_generator, betas=betas),
            "discriminator": torch.optim.Adam(self.modules["discriminator"].parameters(), self.config.lr_discriminator, betas=betas),
        }

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        generator, discriminator = self.modules["generator"], self.modules["discriminator"]
        real = batch[0] * 2 - 1
        fake = generator(torch.randn(len(real), self.config.latent_dim))

        d_loss = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()

        g_loss = F.softplus(-discriminator(fake)).mean()
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    def sample(self, settings: genloom.ImageSampling) -> Any:
        import torch

        latents = settings.rng().standard_normal((settings.n, self.config.latent_dim), dtype="float32")
        images = self.modules["generator"](torch.from_numpy(latents))
        return ((images + 1) / 2).clamp(0, 1).numpy()
