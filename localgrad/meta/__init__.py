"""Meta-learned plasticity: local learning rules with learned parameters,
meta-trained by backprop through the inner learning loop (or by evolution
strategies), and fixed-weight learners that learn in their activations.

    from localgrad import meta
    rule = meta.PolynomialRule(lr=0.05)                     # theta (3, 3, 3): the x^a y^b w^c terms
    w_T = meta.run_episode(rule, w_0, inputs)              # T plastic steps, differentiable
    optimizer = torch.optim.Adam(rule.parameters())        # outer loop: backprop through the episode ...
    es = meta.EvolutionStrategies(rule.parameters(), sigma=0.02, population=64)   # ... or ES into .grad
    layer = meta.PlasticLayer(64, 64, recurrent=True)      # differentiable plasticity, fused episode op

Maths, papers and equations: localgrad/reference/meta.py.
"""

from localgrad.meta.evolution import EvolutionStrategies
from localgrad.meta.fixed_weight import FixedWeightLearner, linear_regression_tasks
from localgrad.meta.inner_loop import meta_train, run_episode
from localgrad.meta.rules import ABCDRule, PolynomialRule, term_name
from localgrad.reference.meta import OJA_THETA, abcd_update, hebb_update, polynomial_theta, polynomial_update

from localgrad.meta.plastic import PlasticEpisode, PlasticLayer

__all__ = [
    "ABCDRule",
    "EvolutionStrategies",
    "FixedWeightLearner",
    "OJA_THETA",
    "PlasticEpisode",
    "PlasticLayer",
    "PolynomialRule",
    "abcd_update",
    "hebb_update",
    "linear_regression_tasks",
    "meta_train",
    "polynomial_theta",
    "polynomial_update",
    "run_episode",
    "term_name",
]
