"""Forward-Forward (Hinton 2022) for stock PyTorch MLPs: every Linear layer
learns by its own goodness loss on a positive pass (the true label embedded
in the input) and a negative pass (a wrong label, or a hybrid image), with
no backward pass through the network.
`localgrad.learner(model, "ff", **options)`; the fused op is
localgrad.ops.forward_forward_step, the maths localgrad.reference.forward_forward."""

from localgrad.forward_forward.learners import ForwardForwardLearner, forward_layers, negative_batch

__all__ = ["ForwardForwardLearner", "forward_layers", "negative_batch"]
