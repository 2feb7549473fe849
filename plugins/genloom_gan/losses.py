"""GAN losses: each returns (discriminator loss, generator loss) pieces from realness logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Loss the discriminator minimises (without the WGAN-GP gradient penalty)."""
    if kind == "non-saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()  # wgan-gp


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Loss the generator minimises."""
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()  # hinge and wgan-gp


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): (|grad critic(x)| - 1)^2 on random mixes of real and fake."""
    mix = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradients,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((gradients.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): the squared gradient norm of the discriminator on real images, per image."""
    real = real.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return gradients.flatten(1).square().sum(dim=1).mean()
