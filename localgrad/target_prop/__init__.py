"""Target propagation (Bengio 2014; Lee et al. 2015; Meulemans et al. 2020;
Ernoult et al. 2022; Ahmad et al. 2020) for stock PyTorch MLPs (and, for
tp/dtp/ldrl, strided-conv nets with ConvTranspose2d feedback: conv.py):
`TargetProp(model, variant="dtp"|"tp"|"ddtp"|"ldrl"|"gait", beta=).step(x, y)`
writes minus the forward update into the weights' `.grad` and the feedback
loss gradient into the feedback parameters' (`feedback_parameters()`).
Closed-form feedback gradients from the fused op where the maps are linear;
the rest (conv nets included) by autograd through localgrad.reference.target_prop."""

from localgrad.target_prop.learner import FEEDBACK, LOSSES, VARIANTS, TargetProp

__all__ = ["FEEDBACK", "LOSSES", "TargetProp", "VARIANTS"]
