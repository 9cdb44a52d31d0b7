"""Hebbian learning without feedback: Oja, Sanger (GHA), BCM, Krotov-Hopfield
and SoftHebb layers that learn unsupervised, one fused op per layer and batch
(localgrad.ops.hebbian_update), and a linear probe trained by SGD on top.

    from localgrad import hebbian
    net = nn.Sequential(hebbian.HebbianLinear(784, 2000, "softhebb", activation="triangle"))
    hebbian.learn(net, x_train, epochs=1)               # greedy, layer by layer; .grad = -rate dW
    f = hebbian.features(net, x_train)                  # frozen features
    probe, curve, _ = hebbian.fit_probe(f, y_train, hebbian.features(net, x_test), y_test, 10)

Maths, papers and equations: localgrad/reference/hebbian.py.
"""

from localgrad.hebbian.layers import ACTIVATIONS, DEFAULTS, HebbianConv2d, HebbianLinear
from localgrad.hebbian.training import LinearProbe, features, fit_probe, hebbian_layers, learn
from localgrad.reference.hebbian import RULE_NAMES

__all__ = [
    "ACTIVATIONS",
    "DEFAULTS",
    "HebbianConv2d",
    "HebbianLinear",
    "LinearProbe",
    "RULE_NAMES",
    "features",
    "fit_probe",
    "hebbian_layers",
    "learn",
]
