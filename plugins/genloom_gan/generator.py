"""DCGAN generators: unconditional (``gan``) and class-conditional (``cgan``).

Losses: non-saturating BCE, hinge, or WGAN-GP with its gradient penalty, and an
optional R1 penalty. By default the discriminator is spectrally normalised and sees
a minibatch standard-deviation channel, and both networks refine each size with
3x3 convolutions (docs/image-generators.md has the measurements behind these
defaults). Samples come from an exponential moving average of the generator's weights.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

import genloom
from genloom_gan.squares import square_image_levels

if TYPE_CHECKING:
    import torch

    from genloom_gan.nets import ConvGenerator


class DCGANConfig(genloom.GeneratorConfig):
    """Knobs of the DCGAN generators."""

    steps: int = Field(3000, ge=1, description="Generator updates (each after `d_steps` discriminator updates).")
    sample_every: int = Field(500, ge=0, description="Write a sample grid every N steps (0: only at the end).")
    latent_dim: int = Field(32, ge=1, le=1024, description="Size of the noise vector the generator starts from.")
    width: int = Field(
        64, ge=8, le=1024, description="Channels of the first discriminator convolution; the generator mirrors it."
    )
    refine_generator: int = Field(
        2,
        ge=0,
        le=4,
        description=(
            "Size-keeping 3x3 convolutions after each size step of the generator (each costs sampling speed; "
            "cgan's default is 0: its labels do what they do for gan)."
        ),
    )
    refine_discriminator: int = Field(
        2, ge=0, le=4, description="Size-keeping 3x3 convolutions after each size step of the discriminator."
    )
    spectral_norm: bool = Field(True, description="Spectral normalisation on every discriminator layer.")
    minibatch_std: bool = Field(
        True, description="Give the discriminator a minibatch standard-deviation channel, so it sees low variety."
    )
    loss: Literal["non-saturating", "hinge", "wgan-gp"] = Field("non-saturating", description="Adversarial loss.")
    r1_weight: float = Field(
        0.0,
        ge=0,
        description="Weight gamma of the R1 penalty gamma/2 |grad D(real)|^2 on the discriminator (0: none).",
    )
    gp_weight: float = Field(10.0, ge=0, description="Weight of the gradient penalty (loss wgan-gp only).")
    d_steps: int = Field(
        1, ge=1, le=10, description="Discriminator updates per generator update (5 is usual with wgan-gp)."
    )
    lr_generator: float = Field(2e-4, gt=0, description="Adam learning rate of the generator.")
    lr_discriminator: float = Field(2e-4, gt=0, description="Adam learning rate of the discriminator.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of both optimizers (0.0 is usual with wgan-gp).")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 of both optimizers (0.9 is usual with wgan-gp).")
    ema_decay: float = Field(
        0.999,
        ge=0,
        lt=1,
        description=(
            "Decay of the moving average of generator weights used for sampling (0: sample the raw generator); "
            "it warms up: update t (from 0) uses min(ema_decay, (1 + t) / (10 + t)), "
            "so early averages forget the initialisation."
        ),
    )
    freeze_discriminator_layers: int = Field(
        0,
        ge=0,
        description="FreezeD, for fine-tuning (--init-from): keep the discriminator's first N convolutions as the "
        "base trained them (0: train them all).",
    )


class DCGAN(genloom.ImageGenerator):
    """Deep convolutional GAN for square images of 8, 16, 32 or 64 pixels."""

    name = "gan"
    fixed_fields = ("latent_dim", "width", "refine_generator", "refine_discriminator", "spectral_norm", "minibatch_std")
    Config = DCGANConfig
    capabilities = genloom.Capabilities(exportable=True)
    description = "DCGAN: spectrally normalised discriminator, minibatch spread; non-saturating, hinge or WGAN-GP"
    config: DCGANConfig

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        square_image_levels(self.facts, self.name)

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_gan.nets import ConvDiscriminator, ConvGenerator

        channels, levels, classes = self.facts["channels"], square_image_levels(self.facts, self.name), self.num_classes
        config = self.config
        generator = ConvGenerator(config.latent_dim, channels, levels, config.width, classes, config.refine_generator)
        discriminator = ConvDiscriminator(
            channels,
            levels,
            config.width,
            classes,
            config.refine_discriminator,
            config.spectral_norm,
            config.minibatch_std,
        )
        discriminator.freeze_first(config.freeze_discriminator_layers)
        modules = {"generator": generator, "discriminator": discriminator}
        if self.config.ema_decay:
            modules["generator_ema"] = copy.deepcopy(generator).requires_grad_(False)
        return modules

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        betas = (self.config.beta1, self.config.beta2)
        return {
            "generator": torch.optim.Adam(
                self.modules["generator"].parameters(), self.config.lr_generator, betas=betas
            ),
            "discriminator": torch.optim.Adam(
                self.modules["discriminator"].parameters(), self.config.lr_discriminator, betas=betas
            ),
        }

    def get_batch(self, data: Any, rng: np.random.Generator) -> list[Any]:
        """One real batch per discriminator update."""
        return [super(DCGAN, self).get_batch(data, rng) for _ in range(self.config.d_steps)]

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch

        from genloom_gan.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty

        generator, discriminator, kind = self.modules["generator"], self.modules["discriminator"], self.config.loss
        figures: dict[str, float] = {}
        for images, labels in batch:
            real, labels = images * 2 - 1, labels if self.num_classes else None
            with torch.no_grad():
                fake = generator(torch.randn(len(real), self.config.latent_dim, device=real.device), labels)
            d_loss = discriminator_loss(kind, discriminator(real, labels), discriminator(fake, labels))
            figures["d_loss"] = d_loss.item()
            if kind == "wgan-gp":
                penalty = gradient_penalty(functools.partial(discriminator, labels=labels), real, fake)
                figures["gradient_penalty"] = penalty.item()
                d_loss = d_loss + self.config.gp_weight * penalty
            if self.config.r1_weight:
                r1 = r1_penalty(functools.partial(discriminator, labels=labels), real)
                figures["r1_penalty"] = r1.item()
                d_loss = d_loss + self.config.r1_weight / 2 * r1
            optimizers["discriminator"].zero_grad(set_to_none=True)
            self.backward(d_loss)
            self.step(optimizers["discriminator"])

        # The generator update draws fresh noise for the classes of the last real batch.
        fake = generator(torch.randn(len(real), self.config.latent_dim, device=real.device), labels)
        g_loss = generator_loss(kind, discriminator(fake, labels))
        optimizers["generator"].zero_grad(set_to_none=True)
        self.backward(g_loss)
        self.step(optimizers["generator"])
        self._update_ema(step)
        return {**figures, "g_loss": g_loss.item()}

    def sample(self, settings: genloom.ImageSampling) -> np.ndarray:
        import torch

        latents = settings.rng().standard_normal((settings.n, self.config.latent_dim), dtype=np.float32)
        labels = self.resolve_labels(settings.labels, settings.n)
        return self._sampler()(torch.from_numpy(latents), None if labels is None else torch.from_numpy(labels)).numpy()

    def export_spec(self) -> genloom.ExportSpec:
        """One graph, ``generator``: ``latents`` (and ``labels``) to ``images`` in [0, 1], any batch size."""
        import torch

        inputs: tuple[torch.Tensor, ...] = (torch.zeros(2, self.config.latent_dim),)
        names = ["latents"]
        if self.num_classes:
            inputs, names = (*inputs, torch.zeros(2, dtype=torch.int64)), [*names, "labels"]
        axes = {name: {0: "batch"} for name in [*names, "images"]}
        return genloom.ExportSpec(
            "image-from-latent", [genloom.GraphSpec("generator", self._sampler(), inputs, names, ["images"], axes)]
        )

    def _sampler(self) -> torch.nn.Module:
        from genloom_gan.nets import ImageOutput

        return ImageOutput(self._generator_net("generator_ema" if "generator_ema" in self.modules else "generator"))

    def _generator_net(self, name: str) -> ConvGenerator:
        """The ConvGenerator that :meth:`build` made under ``name`` (the SDK holds every module as an ``nn.Module``)."""
        from genloom_gan.nets import ConvGenerator

        net = self.modules[name]
        assert isinstance(net, ConvGenerator), f"module '{name}' is a {type(net).__name__}, not the built ConvGenerator"
        return net

    def ema_decay_at(self, step: int) -> float:
        """The moving average's decay at update ``step`` (from 0): ``ema_decay``, warmed up as
        ``(1 + step) / (10 + step)``."""
        return min(self.config.ema_decay, (1 + step) / (10 + step))

    def _update_ema(self, step: int) -> None:
        import torch

        if "generator_ema" not in self.modules:
            return
        decay = self.ema_decay_at(step)
        live, average = self.modules["generator"], self.modules["generator_ema"]
        with torch.no_grad():
            for smooth_parameter, live_parameter in zip(average.parameters(), live.parameters(), strict=True):
                smooth_parameter.lerp_(live_parameter, 1 - decay)
            for smooth_buffer, live_buffer in zip(average.buffers(), live.buffers(), strict=True):
                smooth_buffer.copy_(live_buffer)


class ConditionalDCGANConfig(DCGANConfig):
    """Knobs of ``cgan``: those of ``gan``, with a generator that keeps its sampling speed (the labels give it what
    the unconditional one needs 3x3 refinements for)."""

    refine_generator: int = Field(
        0,
        ge=0,
        le=4,
        description="Size-keeping 3x3 convolutions after each size step of the generator (each costs sampling speed).",
    )


class ConditionalDCGAN(DCGAN):
    """DCGAN conditioned on class labels from the data source (class sub-folders, npz labels, digits)."""

    name = "cgan"
    Config = ConditionalDCGANConfig
    capabilities = genloom.Capabilities(conditional=True, exportable=True)
    description = "class-conditional DCGAN (projection discriminator); sample with labels"
