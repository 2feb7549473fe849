"""``tvae``: the variational autoencoder counterpart of CTGAN (TVAE, Xu et al., 2019), over the same encoded rows.

The loss is the negative log-likelihood of the encoded row (a Gaussian with a learned scale per offset, a
categorical per one-hot), times ``loss_factor``, plus the KL divergence of q(z | row) from N(0, I). Rows are
generated from N(0, I) codes; offsets get noise of the learned scale, one-hots are sampled (Gumbel-max).
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

SIGMA_RANGE = (0.01, 1.0)
"""The learned output scales are kept in this range after every step (TVAE's)."""


class TVAEConfig(ModeConfig):
    """Knobs of ``tvae`` (TVAE's defaults unless said)."""

    steps: int = Field(1500, ge=1, description="Optimisation steps.")
    batch_size: int = Field(500, ge=1, description="Rows per step (at most the table's rows, drawn without repeats).")
    hidden_dims: list[int] = Field(
        [128, 128], min_length=1, description="Widths of the encoder's and decoder's layers."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay.")
    loss_factor: float = Field(2.0, gt=0, description="Weight of the reconstruction term against the KL term.")


class TVAE(ModeGenerator):
    """Tabular VAE over mode-specific normalised rows."""

    name = "tvae"
    Config = TVAEConfig
    description = "tabular VAE (TVAE) over mode-specific normalised rows"
    monitor = "val_loss"
    config: TVAEConfig

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_tabular.nets import TableDecoder, TableEncoder

        width, config = self.codec.transform.width, self.config
        return {
            "encoder": TableEncoder(width, config.hidden_dims, config.latent_dim),
            "decoder": TableDecoder(config.latent_dim, list(reversed(config.hidden_dims)), width),
        }

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
        """The held-out rows' loss (reconstruction times loss_factor, plus KL), at a fixed seed."""
        import torch

        rows = torch.from_numpy(self.codec.transform.encode(data.frame, np.random.default_rng(ENCODING_SEED)))
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
        return self.codec.model_copy(update={"sigmas": scales.tolist()})

    def sampling_network(self) -> torch.nn.Module:
        return self.activated(self._decoder().body)
