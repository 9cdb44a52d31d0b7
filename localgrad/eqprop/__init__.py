"""Equilibrium Propagation (Scellier & Bengio 2017) and contrastive Hebbian
learning as layered energy-based networks relaxed by localgrad's fused ops.

    model = localgrad.eqprop.EqPropMLP([784, 500, 10], beta=0.5, nudging="centered")
    loss, pred = model.eqprop_step(x, y)   # writes .grad; then optimizer.step()
    out = model(x)                         # free phase, output layer
"""

from localgrad.eqprop.mlp import EqPropMLP

__all__ = ["EqPropMLP"]
