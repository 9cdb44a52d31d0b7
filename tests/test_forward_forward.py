"""Forward-Forward's oracles (Hinton 2022; localgrad.reference.forward_forward)
and its learner: the closed-form update equals autograd of each layer's own
loss, layer by layer; no negative sample carries its true label; prediction
is the goodness accumulated over labels; the learner writes exactly the
reference's update into .grad."""

import itertools

import pytest
import torch
from torch import nn

import localgrad
from localgrad.forward_forward import forward_layers, negative_batch
from localgrad.reference import forward_forward as ref
from testing import rel_err

KINDS = {"identity": (1, 0.0), "relu": (2, 0.0), "leaky": (3, 0.1), "tanh": (4, 0.0), "sigmoid": (5, 0.0)}


def random_net(widths, kind_names, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(widths[i + 1], widths[i], generator=g, dtype=dtype) * widths[i] ** -0.5
               for i in range(len(widths) - 1)]
    biases = [0.1 * torch.randn(widths[i + 1], generator=g, dtype=dtype) for i in range(len(widths) - 1)]
    kinds = [KINDS[k][0] for k in kind_names]
    slopes = [KINDS[k][1] for k in kind_names]
    return g, weights, biases, kinds, slopes


@pytest.mark.parametrize("goodness,loss,normalize", list(itertools.product(ref.GOODNESS, ref.LOSSES, ref.NORMALIZE)))
def test_closed_form_is_autograd_of_each_layers_loss(goodness, loss, normalize):
    widths, names = [11, 9, 7, 5], ["relu", "tanh", "leaky"]
    if goodness == "meansq":
        names = ["sigmoid", "identity", "relu"]
    g, weights, biases, kinds, slopes = random_net(widths, names, seed=len(goodness) + len(loss) + len(normalize))
    B = 6
    x_pos, x_neg = torch.randn(B, 11, generator=g, dtype=torch.float64), torch.randn(B, 11, generator=g,
                                                                                      dtype=torch.float64)
    # Thresholds near each layer's goodness, so that both sides of the logistic matter.
    thresholds = [0.7, 1.3, 0.4]
    alpha = 1.7
    eps = 1e-3  # large enough that a missing eps in the divisor shows
    gw, gb, good, losses = ref.step(x_pos, x_neg, weights, biases, kinds, slopes, goodness, loss, thresholds, alpha,
                                    normalize, eps)
    h_pos, h_neg = x_pos, x_neg
    for l in range(3):
        w = weights[l].clone().requires_grad_()
        b = biases[l].clone().requires_grad_()
        L = ref.layer_loss(h_pos, h_neg, w, b, kinds[l], slopes[l], goodness, loss, thresholds[l], alpha, normalize,
                           eps)
        dw, db = torch.autograd.grad(L, [w, b])
        assert rel_err(gw[l], dw) < 1e-12, l
        assert rel_err(gb[l], db) < 1e-12, l
        assert abs(losses[l].item() - L.item()) < 1e-12 * abs(L.item())
        # Each layer's input is the previous layer's output, detached: no gradient crosses layers.
        h_pos = ref.layer_forward(h_pos, weights[l], biases[l], kinds[l], slopes[l], normalize, eps)
        h_neg = ref.layer_forward(h_neg, weights[l], biases[l], kinds[l], slopes[l], normalize, eps)
        assert rel_err(good[l, 0], ref.goodness(h_pos, goodness)) < 1e-12
        assert rel_err(good[l, 1], ref.goodness(h_neg, goodness)) < 1e-12


def test_threshold_loss_is_the_papers_logistic():
    """Eq. 1: p(positive) = logistic(sum of squares - theta); the threshold
    loss is -log p for positive rows and -log(1 - p) for negative ones."""
    a_pos = torch.tensor([[1.0, 2.0], [0.5, 0.0]], dtype=torch.float64)
    a_neg = torch.tensor([[0.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    theta = 2.0
    p_pos = 1 / (1 + torch.exp(-(a_pos.pow(2).sum(1) - theta)))
    p_neg = 1 / (1 + torch.exp(-(a_neg.pow(2).sum(1) - theta)))
    want = (-torch.log(p_pos) - torch.log(1 - p_neg)).mean()
    got = ref.pair_loss(ref.logit(a_pos, "sumsq", theta), ref.logit(a_neg, "sumsq", theta), "threshold", 1.0)
    assert abs(got.item() - want.item()) < 1e-13 * want.item()
    # neg_sumsq: positive rows want a small sum of squares.
    assert ref.logit(a_pos, "neg_sumsq", theta)[1] > 0 > ref.logit(a_pos, "neg_sumsq", theta)[0]


def test_no_negative_sample_carries_its_true_label():
    n_classes, union = 10, 4000
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, n_classes, (union,), generator=g)
    x = torch.rand(union, 30, generator=g, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    x_pos, x_neg = negative_batch(x, y, n_classes, "wrong_label", gen, 0, union)
    assert torch.equal(x_pos[:, :n_classes].argmax(1), y)
    neg_label = x_neg[:, :n_classes].argmax(1)
    assert (x_neg[:, :n_classes].sum(1) == 1).all()  # one label each, scale 1
    assert not (neg_label == y).any()
    assert torch.equal(x_pos[:, n_classes:], x[:, n_classes:]) and torch.equal(x_neg[:, n_classes:], x[:, n_classes:])
    # Uniform over the 9 wrong labels: 4000 draws put each within 5 sigma of 4000 / 9.
    counts = torch.bincount((neg_label - y) % n_classes, minlength=n_classes)
    assert counts[0] == 0
    expect, sigma = union / 9, (union * (1 / 9) * (8 / 9)) ** 0.5
    assert ((counts[1:] - expect).abs() < 5 * sigma).all(), counts
    # A rank's rows are the union batch's rows: the same draws as the single process.
    gen = torch.Generator().manual_seed(3)
    _, shard_neg = negative_batch(x[1000:2000], y[1000:2000], n_classes, "wrong_label", gen, 1000, union)
    assert torch.equal(shard_neg, x_neg[1000:2000])


def test_hybrid_negatives_mix_two_images_by_large_regions():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 28 * 28, generator=g, dtype=torch.float64)
    _, x_neg = negative_batch(x, torch.zeros(5, dtype=torch.long), 10, "hybrid", torch.Generator().manual_seed(2),
                              0, 5, image_shape=(28, 28))
    # Every negative takes pixels from its own image and from another one.
    for i in range(5):
        assert (x_neg[i] == x[i]).any() and (x_neg[i] != x[i]).any()
    bits = torch.randint(0, 2, (3, 28, 28), generator=g).double()
    mask = ref.hybrid_mask((28, 28), bits)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # Blurring makes regions: far fewer 0/1 changes between neighbours than the bits have.
    m = mask.reshape(3, 28, 28)
    assert (m[:, :, 1:] != m[:, :, :-1]).sum() < 0.3 * (bits[:, :, 1:] != bits[:, :, :-1]).sum()
    # Every pixel of a negative comes from its own image or its partner.
    for i in range(5):
        own = x_neg[i] == x[i]
        other = torch.stack([x_neg[i] == x[j] for j in range(5) if j != i]).any(0)
        assert (own | other).all()


def test_scores_are_the_goodness_accumulated_over_labels():
    _, weights, biases, kinds, slopes = random_net([14, 8, 6, 5], ["relu", "tanh", "relu"], seed=4)
    x = torch.randn(7, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    got = ref.scores(x, weights, biases, kinds, slopes, 4, "sumsq", "l2", 1e-8, first=1, label_scale=2.0)
    for c in range(4):
        h = x.clone()
        h[:, :4] = 0
        h[:, c] = 2.0
        total = torch.zeros(7, dtype=torch.float64)
        for l in range(3):
            h = ref.activations.apply(h / (h.norm(dim=1, keepdim=True) + 1e-8) @ weights[l].t() + biases[l], kinds[l],
                                      slopes[l])
            if l >= 1:
                total += (h * h).sum(1)
        assert rel_err(got[:, c], total) < 1e-13


def mlp(seed=0, widths=(16, 12, 10, 4), dtype=torch.float64):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers).to(dtype)


@pytest.mark.parametrize("options", [{}, {"loss": "symmetric", "alpha": 2.0, "goodness": "meansq",
                                          "normalize": "l2"}, {"readout": "linear"}])
def test_learner_writes_the_references_update(options):
    model = mlp()
    if options.get("readout") == "linear":
        model = model[:-1]  # the readout's logits take no activation
    learner = localgrad.learner(model, "ff", seed=5, **options)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (9,), generator=g)
    gen = torch.Generator().manual_seed(5)
    x_pos, x_neg = negative_batch(x, y, 4, "wrong_label", gen, 0, 9)
    out = learner.step(x, y)
    layers = forward_layers(model, "ff")
    if options.get("readout") == "linear":
        layers = layers[:-1]
    weights = [m.weight.detach() for m, _, _ in layers]
    biases = [m.bias.detach() for m, _, _ in layers]
    gw, gb, _, losses = ref.step(x_pos, x_neg, weights, biases, [k for _, k, _ in layers], [s for _, _, s in layers],
                                 options.get("goodness", "sumsq"), options.get("loss", "threshold"),
                                 learner.thresholds, options.get("alpha", 1.0), options.get("normalize", "rms"), 1e-8)
    for (m, _, _), dw, db in zip(layers, gw, gb):
        assert rel_err(m.weight.grad, dw) < 1e-12 and rel_err(m.bias.grad, db) < 1e-12
    if options.get("readout") == "linear":
        readout = model[-1]
        feats = learner._features(x, weights, biases)
        w, b = readout.weight.detach().requires_grad_(), readout.bias.detach().requires_grad_()
        ce = torch.nn.functional.cross_entropy(feats @ w.t() + b, y)
        dw, db = torch.autograd.grad(ce, [w, b])
        assert rel_err(readout.weight.grad, dw) < 1e-12 and rel_err(readout.bias.grad, db) < 1e-12
        assert abs(out.loss.item() - (losses.sum() + ce).item()) < 1e-12
        assert learner.predict(x).shape == (9, 4)
    else:
        assert abs(out.loss.item() - losses.sum().item()) < 1e-12
        want = ref.scores(x, weights, biases, learner.kinds, learner.slopes, 4, options.get("goodness", "sumsq"),
                          options.get("normalize", "rms"), 1e-8, first=0)
        assert torch.equal(learner.predict(x), want)


def test_learner_learns_a_separable_task():
    """Two Gaussian classes: after training, accumulated goodness picks the
    class far above chance (an untrained net scores near chance)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(22, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    learner = localgrad.learner(model, "ff", seed=0)
    g = torch.Generator().manual_seed(1)
    centres = 2 * torch.randn(2, 22, generator=g)

    def batch(n):
        y = torch.randint(0, 2, (n,), generator=g)
        return centres[y] + torch.randn(n, 22, generator=g), y

    opt = learner.default_optimizer(lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        learner.step(*batch(64))
        opt.step()
    x, y = batch(500)
    acc = (learner.predict(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9, acc


BAD_OPTIONS = [
    ({"goodness": "l1"}, ValueError, "goodness must be one of"),
    ({"loss": "hinge"}, ValueError, "loss must be one of"),
    ({"normalize": "batch"}, ValueError, "normalize must be one of"),
    ({"negatives": "hybrid"}, ValueError, "needs readout='linear'"),
    ({"threshold": [1.0]}, ValueError, "threshold must be a number or one per FF layer"),
    ({"alpha": 0.0}, ValueError, "alpha must be positive"),
    ({"score_from": 3}, ValueError, "score_from must be below"),
    ({"n_classes": 16}, localgrad.UnsupportedModelError, "needs more inputs than classes"),
]


@pytest.mark.parametrize("options,error,words", BAD_OPTIONS, ids=[str(b[0]) for b in BAD_OPTIONS])
def test_bad_options_are_named(options, error, words):
    with pytest.raises(error, match=words):
        localgrad.learner(mlp(), "ff", **options)


def test_models_it_cannot_train_are_refused_by_name():
    with pytest.raises(localgrad.UnsupportedModelError, match=r"model\[1\] \(GELU\)"):
        localgrad.learner(nn.Sequential(nn.Linear(12, 5), nn.GELU(), nn.Linear(5, 4)), "ff")
    with pytest.raises(localgrad.UnsupportedModelError, match="nn.Sequential"):
        localgrad.learner(nn.Linear(12, 4), "ff")
    with pytest.raises(localgrad.UnsupportedModelError, match="must have no activation"):
        localgrad.learner(nn.Sequential(nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU()), "ff",
                          readout="linear")
