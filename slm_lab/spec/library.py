"""The spec library the lab ships under ``slm_lab/spec/benchmark/``: every (file, name) pair, and the values that
fill a template spec's ``${...}`` placeholders when it is run without a command line (smoke tests, seeded records).
"""

import json

import yaml

from slm_lab import SPEC_DIR

__all__ = ["TEMPLATE_SETS", "shipped_specs", "template_sets"]

# a template spec takes its env on the command line (-s env=...); without one, use this env of its family
TEMPLATE_SETS: dict[str, list[str]] = {
    "mujoco": ["env=HalfCheetah-v5", "max_frame=1000"],
    "atari": ["env=ALE/Pong-v5"],
}


def shipped_specs() -> list[tuple[str, str]]:
    """Every ``(spec_file, spec_name)`` under ``benchmark/``, the file relative to the spec folder, in path order."""
    found = []
    for path in sorted((SPEC_DIR / "benchmark").rglob("*")):
        if path.suffix == ".json":
            names = json.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            names = yaml.safe_load(path.read_text())
        else:
            continue
        found += [(str(path.relative_to(SPEC_DIR)), name) for name in names if not name.startswith("_")]
    return found


def template_sets(spec_file: str) -> list[str] | None:
    """The ``-s`` items a shipped template needs (None for a spec without placeholders)."""
    if "${" not in (SPEC_DIR / spec_file).read_text():
        return None
    return next(sets for family, sets in TEMPLATE_SETS.items() if family in spec_file)
