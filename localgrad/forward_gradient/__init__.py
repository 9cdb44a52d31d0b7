"""Forward gradients: gradient estimates from forward-mode directional
derivatives (torch.func.jvp), no backward pass.

    learner = localgrad.learner(model, "fg-activity", tangents=4)

Rules: fg-weight (weight perturbation, Baydin et al. 2022), fg-activity
(activity perturbation) and fg-local (activity perturbation of local
per-block losses; both Ren et al. 2023). The estimators underneath take
drawn tangents and return the estimates (localgrad.forward_gradient.estimators).
Maths, papers and equations: localgrad/reference/forward_gradient.py.
"""

from localgrad.forward_gradient.estimators import (activity_perturbation, local_perturbation, output_error,
                                                   per_sample_loss, weight_perturbation)
from localgrad.forward_gradient.learners import PERTURBATIONS, ForwardGradientLearner

__all__ = [
    "PERTURBATIONS",
    "ForwardGradientLearner",
    "activity_perturbation",
    "local_perturbation",
    "output_error",
    "per_sample_loss",
    "weight_perturbation",
]
