"""Runs adversarial cases of one batch in this process:
`python runner.py BATCH [IDS_FILE]` runs the cases whose ids the JSON list in
IDS_FILE names (default: the whole batch), in the batch's order. It prints
`START <id>` before each case and one JSON line after it, so the parent
(test_adversarial.py) can tell which case a crash killed and restart after
it."""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

warnings.simplefilter("ignore")  # the suite judges errors, not warnings
torch.set_num_threads(1)


def main(batch: str, ids_file: str | None = None) -> int:
    from cases import batches, judge

    selected = batches()[batch]
    if ids_file is not None:
        with open(ids_file) as f:
            wanted = set(json.load(f))
        selected = [c for c in selected if c.id in wanted]
    for case in selected:
        print(f"START {case.id}", flush=True)
        try:
            outcome, detail = judge(case)
        except Exception as exc:  # the oracle itself must not hide a case
            outcome, detail = "failure", f"uncaught {type(exc).__name__}: {exc} {traceback.format_exc(limit=2)[-300:]}"
        print(json.dumps({"id": case.id, "outcome": outcome, "detail": detail}), flush=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
