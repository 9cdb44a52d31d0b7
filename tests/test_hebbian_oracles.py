"""The fixed points Hebbian theory predicts, checked on the reference rules
(localgrad/reference/hebbian.py): Oja -> the top principal component with
|w| = 1, Sanger -> the top-k in order, BCM -> selectivity with theta = E[y^2],
SoftHebb -> the unit sphere, Krotov -> the unit p-sphere. The op tests check
the fused kernels against the same reference."""

import pytest
import torch

from localgrad.reference import hebbian as ref


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny steps: threads only add overhead (and the machine is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def spectrum_cov(eigenvalues, seed=0):
    """A covariance with the given eigenvalues and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T, q


def batch_with_moment(cov):
    """Rows x_b with (1/B) sum_b x_b x_b^T = cov exactly, so the batch-mean
    update is the mean-field one."""
    n = cov.shape[0]
    return (n ** 0.5) * torch.linalg.cholesky(cov).T


def top_eigenvectors(cov, k):
    vals, vecs = torch.linalg.eigh(cov)
    return vecs[:, vals.argsort(descending=True)[:k]].T


def digits_centered():
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float64) / 16.0
    return x - x.mean(0)


def test_oja_mean_field_given_covariance():
    cov, _ = spectrum_cov([5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05])
    v1 = top_eigenvectors(cov, 1)[0]
    w = torch.randn(8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.3
    x = batch_with_moment(cov)
    for _ in range(2000):
        dw = ref.oja(x, w[None])[0]
        assert torch.allclose(dw, ref.oja_mean_field(cov, w), rtol=1e-10, atol=1e-12)
        w = w + 0.05 * dw
    cos = (w @ v1).abs() / w.norm()
    assert cos >= 0.9999
    assert abs(w.norm().item() - 1) < 1e-6


def test_oja_stochastic_on_real_data():
    """The online rule on minibatches of real MNIST digits, Robbins-Monro rate
    3 / (300 + t), ends at the top eigenvector of the data's covariance
    (torch.linalg.eigh), |w| = 1."""
    from localgrad import data

    x = data.mnist_subset().x_train.double()
    x = x - x.mean(0)
    cov = x.T @ x / len(x)
    v1 = top_eigenvectors(cov, 1)[0]
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, x.shape[1], generator=g, dtype=torch.float64) * 0.03
    step = 0
    for epoch in range(30):
        for idx in torch.randperm(len(x), generator=g).split(64):
            step += 1
            w = w + (3.0 / (300 + step)) * ref.oja(x[idx], w)
    cos = (w[0] @ v1).abs() / w.norm()
    assert cos >= 0.9999, cos
    assert abs(w.norm().item() - 1) < 1e-3


def test_sanger_rows_are_top_k_in_order():
    x = digits_centered()
    cov = x.T @ x / len(x)
    k = 4
    vecs = top_eigenvectors(cov, k)
    w = torch.randn(k, x.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    for _ in range(3000):
        w = w + 0.3 * ref.sanger(x, w)  # the whole data set as one batch: the mean field
    for i in range(k):
        cos = (w[i] @ vecs[i]).abs() / w[i].norm()
        assert cos >= 0.9999, (i, cos)
        assert abs(w[i].norm().item() - 1) < 1e-6
    # Order: row i matches eigenvector i and no other.
    overlap = (w / w.norm(dim=1, keepdim=True)) @ vecs.T
    assert torch.allclose(overlap.abs(), torch.eye(k, dtype=torch.float64), atol=1e-2)


def test_bcm_becomes_selective_with_theta_second_moment():
    """Two patterns at equal odds (each batch holds both: the expectation):
    the unit ends responding to one of them only (y = 0 to the other), and
    theta, the running mean of y^2, equals E[y^2]. With y in {y*, 0},
    E[y^2] = y*^2 / 2, and phi(y*, theta) = 0 needs y* = theta: both are 2."""
    patterns = torch.tensor([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 3, generator=g, dtype=torch.float64) * 0.3
    theta = torch.zeros(1, dtype=torch.float64)
    for _ in range(3000):
        w = w + 0.05 * ref.bcm(patterns, w, theta)
        y = patterns @ w.T
        theta = theta + 0.1 * ((y * y).mean(0) - theta)
    y = (patterns @ w.T)[:, 0]
    hi, lo = y.abs().max(), y.abs().min()
    assert lo < 1e-9, y
    assert abs(hi.item() - 2) < 1e-9
    assert abs(theta.item() - (y * y).mean().item()) < 1e-9


@pytest.mark.parametrize("rule", ["softhebb", "krotov"])
def test_competitive_rules_reach_the_unit_sphere(rule):
    """Mean field (all of the unit-norm digits in each step): every unit with a
    drive sum_b y_bk u_bk > 0 ends on the unit sphere, the p-sphere for
    Krotov (d |w_k|^p / dt = p (sum_b y u) (1 - |w_k|^p)); units that never
    win do not reach it, and the test does not ask them to."""
    x = digits_centered()
    x = x / x.norm(dim=1, keepdim=True)  # unit inputs, as Krotov & Hopfield require
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, x.shape[1], generator=g, dtype=torch.float64) * 0.1
    p = 3.0
    for _ in range(300):
        if rule == "softhebb":
            u, grad = ref.hebbian_update(x, w, "softhebb", temperature=0.1, lr=1.0)
            y = ref.softhebb_activation(u, 0.1)
        else:
            u, grad = ref.hebbian_update(x, w, "krotov", p=p, rank=2, anti=0.4, lr=1.0)
            y = ref.krotov_activation(u, 2, 0.4)
        w = w - grad
    norms = ref.radius(w, p if rule == "krotov" else 2.0)
    driven = (y * u).sum(0) > 1.0
    assert driven.sum() >= 5, norms
    assert (norms[driven] - 1).abs().max() < 1e-4, norms


def test_adaptive_rate_and_normalisation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    _, grad = ref.hebbian_update(x, w, "softhebb", lr=0.1, lr_power=0.5, normalize=True)
    delta = ref.softhebb(x, w)
    rate = 0.1 * ((w.norm(dim=1) - 1).abs() + 1e-10).sqrt()
    assert torch.allclose(grad, -rate[:, None] * delta / delta.abs().max(), rtol=1e-14)
    _, const = ref.hebbian_update(x, w, "softhebb", lr=0.1)
    assert torch.allclose(const, -0.1 * delta, rtol=1e-14)


def test_empty_batch_is_no_update():
    w = torch.randn(3, 4, dtype=torch.float64)
    for rule in ref.RULE_NAMES:
        u, grad = ref.hebbian_update(torch.zeros(0, 4, dtype=torch.float64), w, rule,
                                     theta=torch.zeros(3, dtype=torch.float64), normalize=True)
        assert u.shape == (0, 3)
        assert torch.equal(grad, torch.zeros_like(grad))
