"""Target propagation (Bengio 2014; Lee et al. 2015; Meulemans et al. 2020;
Ernoult et al. 2022; Ahmad et al. 2020) for stock PyTorch MLPs:
`TargetProp(model, variant="dtp"|"tp"|"ddtp"|"ldrl"|"gait", beta=).step(x, y)`
writes minus the forward update into the weights' `.grad` and the feedback
loss gradient into the feedback parameters' (`feedback_parameters()`).
Python reference path (localgrad.reference.target_prop); no fused op yet."""

from localgrad.target_prop.learner import FEEDBACK, LOSSES, VARIANTS, TargetProp

__all__ = ["FEEDBACK", "LOSSES", "TargetProp", "VARIANTS"]
