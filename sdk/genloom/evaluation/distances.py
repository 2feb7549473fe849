"""Distances between two sets of feature vectors: Frechet distance, and k-NN precision/recall."""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 3
"""k of the k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019 use 3)."""


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two ``(N, D)`` feature sets.

    ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``; the square root is
    taken through symmetric eigendecompositions, so it stays real and stable.
    """
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_of_root = np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0.0, None)).sum()
    mean_term = np.square(a.mean(0) - b.mean(0)).sum()
    return float(max(0.0, mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_of_root))


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points, each reaching
    the point's k-th nearest neighbour. Precision is the share of generated
    points inside the real manifold (fidelity); recall the share of real points
    inside the generated manifold (diversity).
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    precision = _share_inside(generated, real, _kth_neighbour_radii(real, k))
    recall = _share_inside(real, generated, _kth_neighbour_radii(generated, k))
    return precision, recall


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    root: np.ndarray = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return root


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = np.square(a).sum(1)[:, None] + np.square(b).sum(1)[None, :] - 2.0 * a @ b.T
    distances: np.ndarray = np.sqrt(np.clip(squared, 0.0, None))
    return distances


def _kth_neighbour_radii(points: np.ndarray, k: int) -> np.ndarray:
    if len(points) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points, got {len(points)}")
    return np.sort(_distances(points, points), axis=1)[:, k]  # column 0 is the point itself


def _share_inside(queries: np.ndarray, manifold: np.ndarray, radii: np.ndarray) -> float:
    return float((_distances(queries, manifold) <= radii[None, :]).any(axis=1).mean())
