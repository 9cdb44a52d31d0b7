"""The demos' task families: single-neuron PCA episodes (for rediscovering
Oja's rule, Confavreux et al. 2020) and few-shot classification episodes on
scikit-learn's digits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from localgrad._checks import as_int

PCA_SPECTRUM = (2.0, 0.8, 0.5, 0.3, 0.1)  # the covariance's eigenvalues: a gap of 1.2 below the top one


@dataclass
class PCAEpisodes:
    inputs: torch.Tensor  # (T, E, batch, dim), x ~ N(0, C_e)
    weight: torch.Tensor  # (E, 1, dim), the neuron's initial weights, norms in [0.5, 1.5]
    top: torch.Tensor  # (E, dim), the top eigenvector of each C_e


def pca_episodes(n_episodes: int, steps: int, batch: int, generator: torch.Generator, spectrum=PCA_SPECTRUM,
                 scale=(0.5, 1.5), dtype=torch.float32) -> PCAEpisodes:
    """E episodes, each with its own covariance C = s Q diag(spectrum) Q^T (Q a
    random rotation, s uniform in `scale`) and a random initial weight. The
    random scale s keeps a rule from tuning itself to one variance (a weight
    decay that happens to fix the norm at one spectrum)."""
    op = "pca_episodes"
    n_episodes = as_int(n_episodes, op, "n_episodes", minimum=1)
    steps = as_int(steps, op, "steps", minimum=1)
    batch = as_int(batch, op, "batch", minimum=1)
    dim = len(spectrum)
    q, r = torch.linalg.qr(torch.randn(n_episodes, dim, dim, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # a uniformly random rotation
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n_episodes, 1, 1, generator=generator, dtype=torch.float64)
    root = (s * torch.tensor(spectrum, dtype=torch.float64)).sqrt()  # (E, 1, dim)
    z = torch.randn(steps, n_episodes, batch, dim, generator=generator, dtype=torch.float64)
    inputs = (z * root) @ q.transpose(-1, -2)  # x = Q diag(sqrt(spectrum)) z
    direction = torch.randn(n_episodes, 1, dim, generator=generator, dtype=torch.float64)
    norm = 0.5 + torch.rand(n_episodes, 1, 1, generator=generator, dtype=torch.float64)
    weight = direction / direction.norm(dim=-1, keepdim=True) * norm
    return PCAEpisodes(inputs.to(dtype), weight.to(dtype), q[..., 0].to(dtype))


def pca_loss(weight: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Per episode: 1 - cos^2(w, v_1) + (|w|^2 - 1)^2, zero exactly at w = +-v_1.
    weight (..., E, 1, dim), top (E, dim) -> (..., E)."""
    w = weight.squeeze(-2)
    norm2 = (w * w).sum(-1)
    cos2 = (w * top).sum(-1) ** 2 / norm2.clamp_min(1e-12)
    return 1 - cos2 + (norm2 - 1) ** 2


@dataclass
class FewShotEpisodes:
    support: torch.Tensor  # (shots, E, ways, 64): step s shows one example of every class
    support_labels: torch.Tensor  # (shots, E, ways, ways), one-hot
    query: torch.Tensor  # (E, ways * queries, 64)
    query_labels: torch.Tensor  # (E, ways * queries), class indices 0..ways-1


class DigitsEpisodes:
    """N-way K-shot episodes from scikit-learn's 8x8 digits (pixels / 16):
    meta-training classes 0-5, held-out classes 6-9 for evaluation; within
    an episode the classes get a random order (labels mean nothing across
    episodes)."""

    TRAIN_CLASSES = (0, 1, 2, 3, 4, 5)
    TEST_CLASSES = (6, 7, 8, 9)

    def __init__(self, dtype=torch.float32):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.as_tensor(bunch.data / 16.0, dtype=dtype)
        y = torch.as_tensor(bunch.target)
        self.by_class = {c: x[y == c] for c in range(10)}

    def sample(self, n_episodes: int, ways: int, shots: int, queries: int, classes, generator) -> FewShotEpisodes:
        support, query = [], []
        for _ in range(n_episodes):
            picked = torch.randperm(len(classes), generator=generator)[:ways]
            s, q = [], []
            for c in picked.tolist():
                pool = self.by_class[classes[c]]
                order = torch.randperm(len(pool), generator=generator)[: shots + queries]
                s.append(pool[order[:shots]])
                q.append(pool[order[shots:]])
            support.append(torch.stack(s, 1))  # (shots, ways, 64)
            query.append(torch.cat(q))  # (ways * queries, 64)
        eye = torch.eye(ways, dtype=support[0].dtype)
        labels = eye.expand(shots, n_episodes, ways, ways)
        query_labels = torch.arange(ways).repeat_interleave(queries).expand(n_episodes, -1)
        return FewShotEpisodes(torch.stack(support, 1), labels, torch.stack(query), query_labels)
