"""Convolutional VAEs: unconditional (``vae``) and class-conditional (``cvae``).

The loss per image is reconstruction (the negative log-likelihood of the pixels
under a Gaussian with a learned scale, or Bernoulli cross-entropy, summed over
pixels) plus ``beta`` times the KL divergence of q(z | x) from N(0, I); ``beta``
can ramp up from 0 over the first steps (KL warm-up). Both terms are logged.
After the last step, a Gaussian mixture is fitted to the posterior means of the
training images (per class for ``cvae``): samples start from it rather than from
N(0, I), whose empty regions decode to blurred mixtures of digits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from pydantic import Field

import genloom
from genloom.errors import ConfigError
from genloom.results import as_image_batch
from genloom_gan.squares import square_image_levels

if TYPE_CHECKING:
    import torch

    from genloom_vae.nets import ConvDecoder, ConvEncoder

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")
ENCODE_BATCH = 1024
"""Images encoded at once when fitting the prior or answering :meth:`ConvVAE.encode`."""
EVAL_SEED = 0
"""Seed of the posterior samples in :meth:`ConvVAE.evaluate`, so its figures repeat."""


class VAEConfig(genloom.GeneratorConfig):
    """Knobs of the VAE generators."""

    steps: int = Field(10000, ge=1, description="Optimisation steps.")
    sample_every: int = Field(2000, ge=0, description="Write a sample grid every N steps (0: only at the end).")
    eval_every: int = Field(
        2000, ge=0, description="Evaluate on the held-out split every N steps (0: only at the end)."
    )
    latent_dim: int = Field(16, ge=1, le=1024, description="Size of the latent code z.")
    width: int = Field(
        32, ge=8, le=1024, description="Channels of the first encoder convolution; the decoder mirrors it."
    )
    beta: float = Field(
        1.0, ge=0, description="Weight of the KL term (1: the ELBO; above 1: a beta-VAE, smoother latents)."
    )
    beta_warmup_steps: int = Field(
        500, ge=0, description="Steps over which the KL weight ramps linearly from 0 to beta (0: no warm-up)."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    likelihood: Literal["gaussian", "bernoulli"] = Field(
        "gaussian",
        description=(
            "Pixel likelihood: 'gaussian' with one learned scale (sharp reconstructions), or 'bernoulli' "
            "cross-entropy on pixel intensities."
        ),
    )
    prior_components: int = Field(
        20,
        ge=0,
        le=256,
        description=(
            "Components of the Gaussian mixture fitted after training to the posterior means (per class when "
            "conditional); samples start from it. 0: sample from N(0, I)."
        ),
    )


class ConvVAE(genloom.ImageGenerator):
    """Convolutional variational autoencoder for square images of 8, 16, 32 or 64 pixels."""

    name = "vae"
    fixed_fields = ("latent_dim", "width", "likelihood", "prior_components")
    Config = VAEConfig
    description = "convolutional VAE (Gaussian pixels, fitted mixture prior); encode, decode, reconstruct, interpolate"
    operations = {"encode": "array", "decode": "result", "reconstruct": "result", "interpolate": "result"}
    capabilities = genloom.Capabilities(exportable=True)
    config: VAEConfig

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        square_image_levels(self.facts, self.name)

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom.priors import MixturePrior
        from genloom_vae.nets import ConvDecoder, ConvEncoder, GaussianLikelihood

        channels, levels, config = self.facts["channels"], square_image_levels(self.facts, self.name), self.config
        modules: dict[str, torch.nn.Module] = {
            "encoder": ConvEncoder(channels, levels, config.width, config.latent_dim, self.num_classes),
            "decoder": ConvDecoder(config.latent_dim, channels, levels, config.width, self.num_classes),
        }
        if config.likelihood == "gaussian":
            modules["likelihood"] = GaussianLikelihood()
        if config.prior_components:
            modules["prior"] = MixturePrior(config.latent_dim, config.prior_components, self.num_classes)
        return modules

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        parameters = [parameter for module in self.modules.values() for parameter in module.parameters()]
        return {"vae": torch.optim.Adam(parameters, lr=self.config.learning_rate)}

    def beta_at(self, step: int) -> float:
        """The KL weight at ``step``: ramps linearly to ``beta`` over ``beta_warmup_steps``."""
        warmup = self.config.beta_warmup_steps
        return self.config.beta * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        images, labels = batch
        recon, kl = self._loss_terms(images, self._labels(labels), noise=None)
        beta = self.beta_at(step)
        loss = recon + beta * kl
        optimizers["vae"].zero_grad(set_to_none=True)
        self.backward(loss)
        self.step(optimizers["vae"])
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item(), "beta": beta}

    def finish_training(self, data: Any) -> None:
        """Fit the latent prior: a Gaussian mixture (scikit-learn's, full covariances) to the posterior means of the
        training images, one per class for a conditional model."""
        import torch
        from sklearn.mixture import GaussianMixture

        from genloom.priors import MixturePrior

        if "prior" not in self.modules:
            return
        prior = self._built("prior", MixturePrior)
        labels = data.labels.astype(np.int64) if self.num_classes else None
        codes = self._encode(data.images, labels, self.device)
        groups = data.labels if self.num_classes else np.zeros(len(codes), dtype=np.int64)
        for group in range(max(self.num_classes, 1)):
            members = codes[groups == group].astype(np.float64)
            if len(members) < 2:
                continue  # a class this small keeps N(0, I)
            mixture = GaussianMixture(
                min(self.config.prior_components, len(members) // 2),
                covariance_type="full",
                reg_covar=1e-4,
                random_state=self.config.seed,
            ).fit(members)
            fitted = (mixture.weights_, mixture.means_, mixture.covariances_)
            prior.fit(group, *(torch.from_numpy(array).float() for array in fitted))

    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out figures per image, in nats: ``recon`` and ``kl``; ``elbo`` = -(recon + kl); ``recon_mse`` per
        pixel."""
        import torch

        noise = torch.Generator().manual_seed(EVAL_SEED)
        labels = self._labels(None if data.labels is None else torch.from_numpy(data.labels))
        images = torch.from_numpy(data.images)
        recon, kl = self._loss_terms(images, labels, noise=noise)
        mean, _ = self.modules["encoder"](images, labels)
        mse = (torch.sigmoid(self.modules["decoder"](mean, labels)) - images).square().mean()
        # With the Gaussian likelihood, recon and elbo are densities of continuous pixels, not comparable with
        # Bernoulli's figures; recon_mse is.
        return {"recon": recon.item(), "kl": kl.item(), "elbo": -(recon + kl).item(), "recon_mse": mse.item()}

    def sample(self, settings: genloom.ImageSampling) -> np.ndarray:
        import torch

        noise = settings.rng().standard_normal((settings.n, self._noise_dim()), dtype=np.float32)
        labels = self.resolve_labels(settings.labels, settings.n)
        sampler = self._sampler()
        return sampler(torch.from_numpy(noise), None if labels is None else torch.from_numpy(labels)).numpy()

    # -- the extra operations a loaded model offers (see `operations`) ------------

    def encode(self, images: Any, labels: list[int] | None = None) -> np.ndarray:
        """Images -> their latent codes (the posterior means), float32 ``(N, latent_dim)``."""
        batch = as_image_batch(images, self.facts["channels"], self.facts["height"])
        return self._encode(batch, self.resolve_labels(labels, len(batch), required=True))

    def decode(self, latents: Any, labels: list[int] | None = None) -> np.ndarray:
        """Latent codes ``(N, latent_dim)`` (or one code) -> images; a conditional model takes the classes in turn
        without labels."""
        codes = np.asarray(latents, dtype=np.float32)
        codes = codes[None] if codes.ndim == 1 else codes
        if codes.ndim != 2 or codes.shape[1] != self.config.latent_dim:
            raise ConfigError(f"latents: got shape {codes.shape}; this model takes (N, {self.config.latent_dim})")
        return self._decode(codes, self.resolve_labels(labels, len(codes)))

    def reconstruct(self, images: Any, labels: list[int] | None = None) -> np.ndarray:
        """Images -> encoded -> decoded again (through the posterior means)."""
        batch = as_image_batch(images, self.facts["channels"], self.facts["height"])
        classes = self.resolve_labels(labels, len(batch), required=True)
        return self._decode(self._encode(batch, classes), classes)

    def interpolate(self, start: Any, end: Any, steps: int = 8, labels: list[int] | None = None) -> np.ndarray:
        """``steps`` images on the straight line between two latents; ``start``/``end`` are each an image or a
        latent code.

        A conditional model takes the class of the path as ``labels=[c]``.
        """
        if steps < 2:
            raise ConfigError(f"steps: an interpolation needs at least 2 steps, got {steps}")
        classes = self.resolve_labels(labels, steps, required=True)
        ends = [
            point if np.shape(point) == (self.config.latent_dim,) else self.encode(point, labels)[0]
            for point in (start, end)
        ]
        weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self._decode(
            (1 - weights) * np.asarray(ends[0], np.float32) + weights * np.asarray(ends[1], np.float32), classes
        )

    # -- helpers ---------------------------------------------------------------------

    def _loss_terms(
        self, images: torch.Tensor, labels: torch.Tensor | None, noise: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (the pixels' negative log-likelihood) and KL, each summed per image and averaged over the
        batch."""
        import torch
        import torch.nn.functional as F

        mean, log_variance = self.modules["encoder"](images, labels)
        epsilon = torch.randn(mean.shape, generator=noise).to(mean.device)
        latents = mean + torch.exp(0.5 * log_variance) * epsilon
        logits = self.modules["decoder"](latents, labels)
        if "likelihood" in self.modules:
            recon = self.modules["likelihood"](logits, images)
        else:
            recon = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images)
        kl = -0.5 * (1 + log_variance - mean.square() - log_variance.exp()).sum() / len(images)
        return recon, kl

    def export_spec(self) -> genloom.ExportSpec:
        """Three graphs: ``sampler`` (the noise ``latents``, 1 + latent_dim standard normals with a mixture prior,
        and ``labels``, to ``images``), ``decoder`` (latent codes to ``images``) and ``encoder`` (``images`` to
        ``latents``)."""
        import torch

        from genloom_vae.nets import DecodedImages, PosteriorMean

        labels = (torch.zeros(2, dtype=torch.int64),) if self.num_classes else ()
        label_names = ["labels"] if self.num_classes else []
        size, channels = self.facts["height"], self.facts["channels"]

        def graph(
            name: str, module: torch.nn.Module, first: torch.Tensor, first_name: str, output: str
        ) -> genloom.GraphSpec:
            names = [first_name, *label_names]
            return genloom.GraphSpec(
                name, module, (first, *labels), names, [output], {n: {0: "batch"} for n in [*names, output]}
            )

        return genloom.ExportSpec(
            "image-from-latent",
            [
                graph("sampler", self._sampler(), torch.zeros(2, self._noise_dim()), "latents", "images"),
                graph(
                    "decoder",
                    DecodedImages(self._decoder()),
                    torch.zeros(2, self.config.latent_dim),
                    "latents",
                    "images",
                ),
                graph(
                    "encoder",
                    PosteriorMean(self._encoder()),
                    torch.zeros(2, channels, size, size),
                    "images",
                    "latents",
                ),
            ],
        )

    def _encode(self, images: np.ndarray, labels: np.ndarray | None, device: str = "cpu") -> np.ndarray:
        import torch

        from genloom_vae.nets import PosteriorMean

        encoder = PosteriorMean(self._encoder())
        codes = []
        for start in range(0, len(images), ENCODE_BATCH):  # in pieces, so a large training set fits in memory
            chunk = slice(start, start + ENCODE_BATCH)
            classes = None if labels is None else torch.from_numpy(labels[chunk]).to(device)
            codes.append(encoder(torch.from_numpy(images[chunk]).to(device), classes).cpu().numpy())
        return np.concatenate(codes) if codes else np.zeros((0, self.config.latent_dim), np.float32)

    def _noise_dim(self) -> int:
        """Standard normals per sample: the latents, and one more that picks the prior's mixture component."""
        return self.config.latent_dim + (1 if "prior" in self.modules else 0)

    def _sampler(self) -> torch.nn.Module:
        from genloom.priors import MixturePrior
        from genloom_vae.nets import SampledImages

        prior = self._built("prior", MixturePrior) if "prior" in self.modules else None
        return SampledImages(self._decoder(), prior)

    def _decode(self, latents: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        import torch

        from genloom_vae.nets import DecodedImages

        decoder = DecodedImages(self._decoder())
        return decoder(torch.from_numpy(latents), None if labels is None else torch.from_numpy(labels)).numpy()

    def _labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return labels if self.num_classes else None

    def _encoder(self) -> ConvEncoder:
        from genloom_vae.nets import ConvEncoder

        return self._built("encoder", ConvEncoder)

    def _decoder(self) -> ConvDecoder:
        from genloom_vae.nets import ConvDecoder

        return self._built("decoder", ConvDecoder)

    def _built(self, name: str, kind: type[ModuleT]) -> ModuleT:
        """The module :meth:`build` made under ``name``, as its class (the SDK holds every module as a plain
        ``nn.Module``)."""
        module = self.modules[name]
        assert isinstance(module, kind), f"module '{name}' is a {type(module).__name__}, not the {kind.__name__} built"
        return module


class ConditionalConvVAE(ConvVAE):
    """Convolutional VAE conditioned on class labels from the data source."""

    name = "cvae"
    capabilities = genloom.Capabilities(conditional=True, exportable=True)
    description = "class-conditional convolutional VAE; sample, decode and encode with labels"
