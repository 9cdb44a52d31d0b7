"""mkdocs hooks: what the docs show is read from the repository at build time.

- `<!-- table: NAME -->` becomes the measured table NAME of `docs/gen_tables.py`
  (read from `benchmarks/results/*.json`);
- `<!-- rules-table -->` becomes the list of registered rules, read from
  `localgrad.rules()` and `localgrad.rule_info()`, so a rule registered in
  the code appears in the docs without an edit here;
- the plots the benchmarks write (`benchmarks/results/*.png`) are published
  under `results/`, so pages link them without a copy in `docs/`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS.parent / "benchmarks" / "results"

_spec = importlib.util.spec_from_file_location("localgrad_docs_tables", DOCS / "gen_tables.py")
gen_tables = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen_tables  # dataclasses look their module up there
_spec.loader.exec_module(gen_tables)

TABLE_MARKER = re.compile(r"^<!-- table: ([\w.-]+) -->$", re.MULTILINE)
RULES_MARKER = "<!-- rules-table -->"


def rules_table() -> str:
    import localgrad

    lines = ["| rule | family | x | what it does | paper |", "|---|---|---|---|---|"]
    for name in localgrad.rules():
        info = localgrad.rule_info(name)
        cells = [f"`{name}`", info.family.replace("_", " "), info.inputs, info.summary, info.paper]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = TABLE_MARKER.sub(lambda m: gen_tables.render(m.group(1)), markdown)
    if RULES_MARKER in markdown:
        markdown = markdown.replace(RULES_MARKER, rules_table())
    return markdown


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    return files
