"""Synthetic gradients, decoupled neural interfaces (Jaderberg et al. 2017;
Czarnecki et al. 2017) for a stock nn.Sequential:
`DNI(model, split=, conditioned=False, lam=0.0).step(x, y)` writes .grad
for the model (each block from its own synthetic gradient) and for the
synthetic-gradient modules (`learner.sg_parameters()`);
`RecurrentDNI(rnn)` puts one at every truncation boundary of truncated BPTT
on the online family's LeakyRNN. Python path; no fused op. localgrad.reference.synthetic_gradients states the maths."""

from localgrad.synthetic_gradients.learner import DNI, LOSSES, SPLITS
from localgrad.synthetic_gradients.modules import SyntheticGradient
from localgrad.synthetic_gradients.recurrent import RecurrentDNI

__all__ = ["DNI", "LOSSES", "RecurrentDNI", "SPLITS", "SyntheticGradient"]
