"""PEPITA: learning from two forward passes, the second on the input
modulated by a random projection of the output error (Dellaferrera &
Kreiman 2022), with the weight-mirrored adaptive feedback of Srinivasan et
al. 2024 as an option.

    learner = localgrad.learner(model, "pepita")                     # fixed F
    learner = localgrad.learner(model, "pepita", feedback="mirror")  # adaptive F

Maths, papers and equations: localgrad/reference/pepita.py.
"""

from localgrad.pepita.learners import FEEDBACK, PepitaLearner

__all__ = ["FEEDBACK", "PepitaLearner"]
