"""The project's layout, generated from each module's docstring: every module of the code packages with the first
sentence of what it says it is for, written between the markers of docs/development.md (as the settings page is
generated from the settings). ``tests/test_docs.py`` checks the page is current.

    python scripts/layout.py          # rewrite the block in docs/development.md
    python scripts/layout.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("coldproxy", "coldproxy_cli", "models", "export", "service", "loadtest", "bench")
PAGE = ROOT / "docs" / "development.md"
START, END = "<!-- layout:start (python scripts/layout.py) -->", "<!-- layout:end -->"
WIDTH = 150


def summary(path: Path) -> str:
    """The first sentence of the module's docstring, on one line, at most ``WIDTH`` characters."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", text)[0]
    return sentence if len(sentence) <= WIDTH else sentence[: WIDTH - 1].rstrip() + "…"


def render() -> str:
    lines = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if path.name == "__init__.py" and not summary(path):
                continue  # a bare package marker
            lines.append(f"| `{rel.as_posix()}` | {summary(path).replace('|', '/')} |")
    return "\n".join(["| module | what it is for (its docstring's first sentence) |", "|---|---|", *lines])


def page_with_block(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = PAGE.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{PAGE} has no layout markers ({START} ... {END})")
    fresh = page_with_block(text)
    if "--check" in argv:
        if fresh != text:
            print(f"{PAGE.relative_to(ROOT)}'s layout is out of date: python scripts/layout.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
