"""Adversarial cases that fail today, each with the reason: found when the op
table (op_specs.py) grew to every registered op (issue 29). They run as
strict xfails, so a fix makes its case pass and the entry must then go."""

NAN_HEB = ("hebbian_update with a non-finite element in x, weight or theta: the kernel's grad is non-finite "
           "where the reference's is finite")

PENDING = {
    "hebbian_update/ops/x:nan-element": NAN_HEB,
    "hebbian_update/ops/weight:nan-element": NAN_HEB,
    "hebbian_update/ops/weight:inf-element": NAN_HEB,
    "hebbian_update/ops/theta:nan-element": NAN_HEB,
    "hebbian_update/ops/theta:inf-element": NAN_HEB,
    "hebbian_update/wrapper/x:nan-element": NAN_HEB,
}
