"""What BPTT keeps for its backward pass: the bytes autograd saves, the
figure the online rules' constant-size state is compared against."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def saved_bytes(run: Callable[[], object], shared: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for backward while `run()` runs,
    each (data pointer, size) once. Tensors on the storage of a `shared` one
    (the parameters: one copy serves the whole batch) are not counted."""
    skip = {t.untyped_storage().data_ptr() for t in shared}
    seen: set[tuple[int, int]] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.data_ptr(), t.numel())
        if key not in seen and t.untyped_storage().data_ptr() not in skip:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return total
