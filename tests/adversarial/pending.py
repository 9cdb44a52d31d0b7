"""Adversarial cases that fail today, each with the reason: found when the op
table (op_specs.py) grew to every registered op (issue 29). They run as
strict xfails, so a fix makes its case pass and the entry must then go."""

NAN_HEB = ("hebbian_update with a NaN/inf element in weight or theta: the kernels' peak of |dW| (normalize) "
           "skips the unit's NaN row, so the other rows stay finite; the reference's peak is NaN and so is its "
           "whole grad")

PENDING = {
    "hebbian_update/ops/weight:nan-element": NAN_HEB,
    "hebbian_update/ops/weight:inf-element": NAN_HEB,
    "hebbian_update/ops/theta:nan-element": NAN_HEB,
    "hebbian_update/ops/theta:inf-element": NAN_HEB,
}
