"""Every fenced ```python block of README.md and docs/**/*.md runs here.

One test per block. The blocks of one page share a namespace and run in page
order (a later block may use what an earlier one defined), so a test runs any
earlier block of its page that has not run yet. A block whose fence is
preceded by a line `<!-- skip: REASON -->` is reported as skipped with that
reason (a GPU, a cluster, a long run); shell blocks are not executed.
`pytest -rs tests/test_docs_examples.py` lists the skips and their reasons.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "docs").is_dir() or not (ROOT / "README.md").is_file():
    # CI runs the tests against an installed wheel from a folder holding only tests/.
    pytest.skip("README.md and docs/ are not beside the tests", allow_module_level=True)
FENCE_OPEN = re.compile(r"^```(python|py)\s*$")
SKIP = re.compile(r"^<!-- skip: (.+?) -->$")


@dataclass(frozen=True)
class Block:
    page: str
    index: int
    line: int
    code: str
    skip: str | None


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path, root: Path = ROOT) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(root))
    found, i = [], 0
    while i < len(lines):
        if FENCE_OPEN.match(lines[i]):
            start = i
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            skip = SKIP.match(previous)
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"{page}:{start + 1}: a ```python fence that is never closed")
            found.append(Block(page, len(found), start + 1, "\n".join(body) + "\n", skip.group(1) if skip else None))
        i += 1
    return found


ALL_BLOCKS = [block for path in pages() for block in blocks_of(path)]
_namespaces: dict[str, tuple[dict, int]] = {}


def _run_through(block: Block) -> None:
    """Runs the page's blocks up to and including `block`, once each."""
    namespace, done = _namespaces.get(block.page, (None, -1))
    if namespace is None:
        torch.manual_seed(0)
        namespace = {"__name__": f"docs_example_{block.index}"}
    for earlier in blocks_of(ROOT / block.page)[done + 1: block.index + 1]:
        _namespaces[block.page] = (namespace, earlier.index)
        if earlier.skip:
            continue
        code = compile(earlier.code, f"{earlier.page}:{earlier.line}", "exec")
        exec(code, namespace)


@pytest.fixture(scope="module", autouse=True)
def _restore_rule_registry():
    # The guide to writing a rule registers a toy rule; the tests after this
    # module (every registered rule through the Learner API) must not see it.
    import localgrad

    localgrad.rules()
    registry = sys.modules["localgrad.learner"]._RULES
    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


def test_blocks_found():
    # The extractor must see the examples: a README without its loop, or a
    # fence syntax it misreads, would leave nothing to run.
    readme = [b for b in ALL_BLOCKS if b.page == "README.md"]
    assert readme and any("localgrad.learner(" in b.code for b in readme)
    assert len({b.page for b in ALL_BLOCKS}) >= 10


def test_extractor_reads_skip_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- skip: needs a GPU -->\n```python\nraise SystemExit\n```\n\n```py\nx = 1\n```\n"
                    "```bash\nexit 1\n```\n")
    first, second = blocks_of(page, root=tmp_path)
    assert first.skip == "needs a GPU" and first.code == "raise SystemExit\n"
    assert second.skip is None and second.code == "x = 1\n"


def test_readme_tables_match_their_json():
    # README.md is not built by mkdocs: its measured tables are written into
    # it by docs/gen_tables.py, and must not drift from the JSON they show.
    spec = importlib.util.spec_from_file_location("localgrad_docs_tables", ROOT / "docs" / "gen_tables.py")
    tables = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tables
    spec.loader.exec_module(tables)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tables.BLOCK.search(readme), "README.md holds no generated table"
    assert tables.updated(readme) == readme, "README.md's tables are stale: python docs/gen_tables.py --update README.md"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_docs_block(block: Block, monkeypatch, tmp_path):
    if block.skip:
        pytest.skip(f"{block.page}:{block.line}: {block.skip}")
    # Examples that write files (plots, checkpoints) write them here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    _run_through(block)
