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
