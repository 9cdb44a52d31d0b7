"""SnAp-n (Menick et al. 2021): RTRL on a sparse pattern of the influence."""

from __future__ import annotations

import torch

from localgrad import ops
from localgrad._checks import as_int
from localgrad.online.learner import OnlineLearner
from localgrad.online.rtrl import rtrl_chunk


def snap_pattern(adjacency: torch.Tensor, n: int) -> torch.Tensor:
    """reach[k, i]: parameter row i (unit i's incoming weights) influences unit
    k within n steps, i.e. k is reachable from i in at most n − 1 edges of the
    recurrent graph (adjacency[k, l]: l feeds k). SnAp-1 is the diagonal."""
    hidden = adjacency.shape[0]
    reach = torch.eye(hidden, dtype=torch.bool)
    adj = adjacency.bool().cpu()
    for _ in range(n - 1):
        grown = reach | ((adj.double() @ reach.double()) > 0)
        if torch.equal(grown, reach):
            break
        reach = grown
    return reach


class SnAp(OnlineLearner):
    """Sparse n-step approximation: the RTRL update of M restricted to the
    entries (k, p) whose parameter p = (i, ·) reaches unit k within n steps:

        M_t[k, i, :] = (1 − α) M[k, i, :] + α φ'_k (Σ_{l: (l,i) kept} W_kl M[l, i, :] + δ_ki v_i)

    SnAp-1 keeps each unit's own row only ((batch, H, I + H + 1) state, O(H²)
    per step); a pattern covering everything reachable is RTRL. The index
    lists of the pattern are built once here. When the pattern covers every
    (unit, row) pair (SnAp-2 and up on a dense network), the influence is
    RTRL's in the same memory layout, and the dense rtrl_step (a batched
    GEMM) updates it: dense=False forces the sparse kernel anyway."""

    def __init__(self, model, n: int = 1, loss: str = "mse", dense: bool | None = None):
        super().__init__(model, loss)
        n = as_int(n, "SnAp", "n")
        if n < 1:
            raise ValueError(f"SnAp: n must be >= 1, got {n}")
        self.n = n
        hidden = model.hidden_size
        adjacency = torch.ones(hidden, hidden) if model.recurrent_mask is None else model.recurrent_mask.cpu()
        reach = snap_pattern(adjacency, n)
        # Entries in row-major (unit k, row i) order: e = k * H + i when the
        # pattern is full, which is RTRL's (batch, H, H * C) layout.
        entry_unit, entry_row = reach.nonzero(as_tuple=True)
        self.dense = bool(reach.all()) if dense is None else bool(dense and reach.all())
        index = -torch.ones(hidden, hidden, dtype=torch.long)
        index[entry_unit, entry_row] = torch.arange(entry_unit.numel())
        # Neighbours of entry (k, i): units l feeding k whose entry (l, i) is kept.
        adj = adjacency != 0
        pairs = adj[entry_unit] & (index[:, entry_row].T >= 0)
        owner, source = pairs.nonzero(as_tuple=True)  # grouped by entry, l ascending
        nbr_entry = index[source, entry_row[owner]]
        nbr_weight = entry_unit[owner] * hidden + source
        ptr = torch.zeros(entry_unit.numel() + 1, dtype=torch.long)
        ptr[1:] = torch.bincount(owner, minlength=entry_unit.numel()).cumsum(0)
        device = model.weight_ih.device
        as_long = lambda v: torch.as_tensor(v, dtype=torch.long, device=device)  # noqa: E731
        self.entry_unit, self.entry_row = entry_unit.to(device), entry_row.to(device)
        self.nbr_ptr, self.nbr_entry, self.nbr_weight = as_long(ptr), as_long(nbr_entry), as_long(nbr_weight)
        # The op's range checks of these lists cost 9 device syncs a call on
        # CUDA: the first call checks them, the later ones skip the checks.
        self._check_lists = True

    @property
    def n_entries(self) -> int:
        return self.entry_unit.numel()

    def _reset_sensitivities(self, batch_size):
        self.influence = self.model.weight_ih.new_zeros(batch_size, self.n_entries, self._theta_cols())

    def _sensitivity_state(self):
        return {"influence": self.influence.clone()}

    def _load_sensitivity_state(self, state):
        self.influence = state["influence"].clone()

    def _learn(self, xs, h_prevs, dphis, dldh, dldy):
        m = self.model
        if self.dense:
            batch, entries, cols = self.influence.shape
            full = self.influence.view(batch, m.hidden_size, m.hidden_size * cols)
            self.influence = rtrl_chunk(m, full, xs, h_prevs, dphis, dldh).view(batch, entries, cols)
            return
        w = m.effective_weight_hh().detach()
        grad = None
        for t in range(xs.shape[0]):
            self.influence = ops.snap_step(self.influence, w, h_prevs[t], xs[t], dphis[t], m.recurrent_mask,
                                           m.alpha, self.entry_unit, self.entry_row, self.nbr_ptr,
                                           self.nbr_entry, self.nbr_weight, check_indices=self._check_lists)
            self._check_lists = False  # built above from the mask, checked once by the op
            # Σ_b dL/dh[b, unit(e)] M[b, e, c]: a broadcast product and a sum over the
            # batch (einsum's bmm path for this contraction was 3x slower at hidden 64).
            per_entry = (dldh[t][:, self.entry_unit].unsqueeze(2) * self.influence).sum(0)
            grad = per_entry if grad is None else grad + per_entry
        if grad is not None:
            g = grad.new_zeros(m.hidden_size, self._theta_cols())
            g.index_add_(0, self.entry_row, grad)
            m.theta_grad_to_params(g)
