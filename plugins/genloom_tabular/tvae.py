"""``tvae``: the variational autoencoder counterpart of CTGAN (TVAE, Xu et al., 2019), over the same encoded rows.

The loss is the negative log-likelihood of the encoded row (a Gaussian with a learned scale per offset, a
categorical per one-hot), times ``loss_factor``, plus the KL divergence of q(z | row) from N(0, I). After
training, a Gaussian mixture is fitted to the training rows' latent means (``prior_components``); rows are
generated from its codes (N(0, I) without one); offsets get noise of the learned scale, one-hots are sampled
from the decoder's softmax at ``choice_temperature`` (Gumbel-max; 0: the argmax, as TVAE does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from genloom_tabular.base import ENCODING_SEED, ModeConfig, ModeGenerator
from genloom_tabular.codec import ModeCodec
from genloom_tabular.data import TableData

if TYPE_CHECKING:
    import torch

ROWS_PER_COMPONENT = 25
"""The mixture prior has at most one component per this many training rows (11 for the penguins' 275)."""
SIGMA_RANGE = (0.01, 1.0)
"""The learned output scales are kept in this range after every step (TVAE's)."""


class TVAEConfig(ModeConfig):
    """Knobs of ``tvae`` (TVAE's defaults unless said)."""

    steps: int = Field(3000, ge=1, description="Optimisation steps.")
    batch_size: int = Field(500, ge=1, description="Rows per step (at most the table's rows, drawn without repeats).")
    hidden_dims: list[int] = Field(
        [128, 128], min_length=1, description="Widths of the encoder's and decoder's layers."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay.")
    loss_factor: float = Field(2.0, gt=0, description="Weight of the reconstruction term against the KL term.")
    latent_dim: int = Field(16, ge=1, le=4096, description="Size of the latent code.")
    prior_components: int = Field(
        40,
        ge=0,
        le=256,
        description="Components of a Gaussian mixture fitted after training to the training rows' latent means, at "
        f"most one per {ROWS_PER_COMPONENT} rows; samples start from it. 0: from N(0, I), as TVAE does.",
    )
    choice_temperature: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Temperature of the decoder's softmax that each category (and numeric mode) is sampled from; "
        "0: the likeliest, as TVAE does.",
    )


class TVAE(ModeGenerator):
    """Tabular VAE over mode-specific normalised rows."""

    name = "tvae"
    fixed_fields = (*ModeGenerator.fixed_fields, "hidden_dims")
    Config = TVAEConfig
    description = "tabular VAE (TVAE) over mode-specific normalised rows"
    monitor = "val_loss"
    config: TVAEConfig

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom.priors import MixturePrior
        from genloom_tabular.nets import TableDecoder, TableEncoder

        width, config = self.codec.transform.width, self.config
        modules: dict[str, torch.nn.Module] = {
            "encoder": TableEncoder(width, config.hidden_dims, config.latent_dim),
            "decoder": TableDecoder(config.latent_dim, list(reversed(config.hidden_dims)), width),
        }
        if config.prior_components:
            modules["prior"] = MixturePrior(config.latent_dim, config.prior_components)
        return modules

    def noise_dim(self) -> int:
        """With a mixture prior, one more value than the latent size: it picks the component."""
        return self.config.latent_dim + (1 if self.config.prior_components else 0)

    def finish_training(self, data: TableData) -> None:
        """Fit the mixture prior (scikit-learn's, full covariances) to the latent means of the training rows."""
        import torch
        from sklearn.mixture import GaussianMixture

        if "prior" not in self.modules:
            return
        rows = torch.from_numpy(self.encoded_rows(data)).to(self.device)
        means = self.modules["encoder"](rows)[0].cpu().numpy().astype(np.float64)
        mixture = GaussianMixture(
            max(1, min(self.config.prior_components, len(means) // ROWS_PER_COMPONENT)),
            covariance_type="full",
            reg_covar=1e-4,
            random_state=self.config.seed,
        ).fit(means)
        fitted = (mixture.weights_, mixture.means_, mixture.covariances_)
        prior: Any = self.modules["prior"]
        getattr(prior, "module", prior).fit(0, *(torch.from_numpy(array).float() for array in fitted))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        parameters = [p for module in self.modules.values() for p in module.parameters()]
        return {
            "vae": torch.optim.Adam(parameters, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        }

    def get_batch(self, data: TableData, rng: np.random.Generator) -> Any:
        import torch

        rows = self.encoded_rows(data)
        picked = rng.choice(len(rows), size=min(self.config.batch_size, len(rows)), replace=False)
        return torch.from_numpy(rows[picked])

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch

        reconstruction, kl = self._loss_terms(batch, torch.randn_like)
        loss = self.config.loss_factor * reconstruction + kl
        optimizers["vae"].zero_grad(set_to_none=True)
        self.backward(loss)
        self.step(optimizers["vae"])
        with torch.no_grad():
            self._decoder().sigma.clamp_(*SIGMA_RANGE)
        return {"loss": loss.item(), "reconstruction": reconstruction.item(), "kl": kl.item()}

    def _loss_terms(self, rows: torch.Tensor, noise: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction negative log-likelihood and KL divergence, each per row."""
        import torch
        import torch.nn.functional as F

        mean, log_var = self.modules["encoder"](rows)
        codes = mean + noise(mean) * torch.exp(0.5 * log_var)
        raw, sigma = self.modules["decoder"](codes)
        total = raw.new_zeros(())
        for span in self.codec.transform.spans:
            part = slice(span.start, span.start + span.size)
            if span.activation == "tanh":
                scale = sigma[:, part]
                total = total + (((rows[:, part] - torch.tanh(raw[:, part])) ** 2) / (2 * scale**2)).sum()
                total = total + torch.log(scale).sum()
            else:
                total = total + F.cross_entropy(raw[:, part], rows[:, part].argmax(1), reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mean**2 - log_var.exp())
        return total / len(rows), kl / len(rows)

    def _decoder(self) -> Any:
        decoder = self.modules["decoder"]
        return getattr(decoder, "module", decoder)  # under DDP, the wrapped module holds sigma

    def evaluate(self, data: TableData) -> dict[str, float]:
        """The held-out rows' loss (reconstruction times loss_factor, plus KL), at a fixed seed, over the rows whose
        categories the training rows had."""
        import torch

        frame = data.frame[self.codec.transform.known(data.frame)]  # a category unseen in training has no one-hot
        if frame.empty:
            return {}
        rows = torch.from_numpy(self.codec.transform.encode(frame, np.random.default_rng(ENCODING_SEED)))
        generator = torch.Generator().manual_seed(0)
        reconstruction, kl = self._loss_terms(rows, lambda like: torch.randn(like.shape, generator=generator))
        return {"val_loss": float(self.config.loss_factor * reconstruction + kl)}

    def sampling_codec(self) -> ModeCodec:
        """The codec with the decoder's learned scales on the offsets (0 on the one-hots)."""
        sigma = self._decoder().sigma.detach().cpu().numpy().astype(float)
        scales = np.zeros(self.codec.transform.width)
        for span in self.codec.transform.spans:
            if span.activation == "tanh":
                scales[span.start : span.start + span.size] = sigma[span.start : span.start + span.size]
        update = {"sigmas": scales.tolist(), "choice_temperature": self.config.choice_temperature}
        return self.codec.model_copy(update=update)

    def sampling_network(self) -> torch.nn.Module:
        from genloom_tabular.nets import PriorDecoder

        body = self._decoder().body
        prior = self.modules.get("prior")
        return self.activated(body if prior is None else PriorDecoder(getattr(prior, "module", prior), body))
