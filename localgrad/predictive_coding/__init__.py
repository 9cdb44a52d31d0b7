"""Predictive coding (Whittington & Bogacz 2017) for stock PyTorch MLPs:
`PredictiveCoding(model, variant="il"|"fpa"|"zil"|"ipc", steps=, gamma=,
loss="mse"|"ce").step(x, y)` runs the fused inference op and writes minus the
update into `.grad`."""

from localgrad.predictive_coding.learner import LOSSES, VARIANTS, PredictiveCoding

__all__ = ["LOSSES", "PredictiveCoding", "VARIANTS"]
