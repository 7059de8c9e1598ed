"""The code is readable from the repository alone: every decision id it refers to (D7, →D21, B2) is explained in
docs/DECISIONS.md, and no comment points at an external document's section numbers."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ID = re.compile(r"\b([DB]\d{1,2})\b")


def _sources() -> list[Path]:
    files = [*(ROOT / "slm_lab").rglob("*.py"), *(ROOT / "test").rglob("*.py")]
    files += [
        p
        for p in (ROOT / "bin").iterdir()
        if p.is_file() and p.read_text().startswith("#!/usr/bin/env python")
    ]
    return [p for p in files if p.name != Path(__file__).name]


def test_every_decision_id_in_the_code_is_explained_in_decisions_md() -> None:
    defined = set(re.findall(r"^### ([DB]\d{1,2}):", (ROOT / "docs" / "DECISIONS.md").read_text(), re.M))
    used: dict[str, str] = {}
    for path in _sources():
        for decision in ID.findall(path.read_text()):
            used.setdefault(decision, str(path.relative_to(ROOT)))
    assert used, "the scan found no decision ids at all"
    missing = {d: where for d, where in used.items() if d not in defined}
    assert not missing, f"decision ids used in the code but not explained in docs/DECISIONS.md: {missing}"


def test_no_comment_points_at_section_numbers_of_another_document() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _sources()
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"§\s*\d|CONTRACT\.md", line)
    ]
    assert not offenders, offenders


# "`Name` (`slm_lab/x.py`)" or "`Name.attr` in `slm_lab/x.py`": a doc naming where a piece of code lives
_WHERE = re.compile(r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?` (?:\(|in )`(slm_lab/[\w/]+\.py)`")


def test_the_docs_name_the_module_each_piece_of_code_lives_in() -> None:
    wrong = []
    for doc in ("docs/DECISIONS.md", "docs/ARCHITECTURE.md", "README.md"):
        for m in _WHERE.finditer((ROOT / doc).read_text()):
            name, path = m.group(1), ROOT / m.group(2)
            if re.search(r"\.(pt|json|csv|py)$", name):
                continue  # a file name, not code
            first = re.escape(name.split(".")[0])
            defined = path.is_file() and re.search(
                rf"^\s*(?:def|class) {first}\b|^{first}\s*[:=]", path.read_text(), re.M
            )
            if not defined:
                wrong.append(f"{doc}: {name} is not defined in {m.group(2)}")
    assert not wrong, "\n".join(wrong)
