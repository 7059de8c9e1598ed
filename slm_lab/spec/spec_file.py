"""Reading spec files: find a file, substitute ``-s`` variables into its text, and parse it as JSON or YAML.

Reading is bounded (file size, YAML aliases, values once aliases are expanded), so a hostile or broken file fails
with a one-line ``SpecError`` before it grows in memory. A key given twice in one mapping is an error, and YAML reads
dot-less scientific numbers (``3e-4``) as floats (D38). ``_placeholders`` finds the ``${var}`` left unsubstituted.
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml
from loguru import logger

from slm_lab import SPEC_DIR
from slm_lab.errors import SpecError
from slm_lab.spec.normalize import _canonical_number

__all__ = [
    "MAX_SPEC_FILE_BYTES",
    "MAX_SPEC_VALUES",
    "MAX_YAML_ALIASES",
    "load_spec_file",
    "resolve_spec_path",
    "substitute_vars",
]

_PACKAGE_PREFIX = "slm_lab/spec/"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


# Bounds on reading a spec file. Real specs are a few kilobytes with a handful of YAML aliases at most, so these only
# ever stop a hostile or broken file, and stop it before it grows in memory.
MAX_SPEC_FILE_BYTES = 4 * 2**20
MAX_YAML_ALIASES = 1_000
MAX_SPEC_VALUES = 200_000  # mappings, lists and scalars in the file once its aliases are expanded


class _TooLarge(Exception):
    """A spec file over one of the reading bounds; the loader turns it into a SpecError naming the file."""


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int | None = None) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _SpecYamlLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads dot-less scientific numbers (``3e-4``, ``1e7``) as floats (D38), refuses a
    key given twice in one mapping, and stops at ``MAX_YAML_ALIASES`` aliases or a merge (``<<``) that expands past
    ``MAX_SPEC_VALUES`` entries."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _TooLarge(f"more than {MAX_YAML_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden, as YAML allows
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, key_node.start_mark.line + 1)
            seen.add(key_node.value)
        return node

    def flatten_mapping(self, node: Any) -> None:
        super().flatten_mapping(node)
        if len(node.value) > MAX_SPEC_VALUES:
            raise _TooLarge(f"a YAML merge (<<) expanding to more than {MAX_SPEC_VALUES:,} entries")


_SpecYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def resolve_spec_path(spec_file: str | Path) -> Path:
    """Find a spec file (D32): an absolute path; else relative to the cwd; else relative to the package spec
    directory, where a leading ``slm_lab/spec/`` is optional."""
    path = Path(spec_file).expanduser()
    if path.is_absolute():
        if path.is_file():
            return path
        raise SpecError(f"spec file not found: {spec_file}")
    if path.is_file():
        return path.resolve()
    rel = path.as_posix()
    if rel.startswith(_PACKAGE_PREFIX):
        rel = rel[len(_PACKAGE_PREFIX) :]
    package_path = SPEC_DIR / rel
    if package_path.is_file():
        return package_path
    raise SpecError(f"spec file not found: {spec_file} (looked in {Path.cwd()} and in {SPEC_DIR})")


def _split_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise SpecError(f"-s {item!r}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    if not key:
        raise SpecError(f"-s {item!r}: the key before '=' is empty")
    return key, value


def substitute_vars(text: str, sets: list[str] | None) -> str:
    """Replace ``${KEY}`` for each ``KEY=VALUE`` item.

    The item is split at its first ``=``. A numeric VALUE becomes a canonical number that also replaces a quoted
    ``"${KEY}"`` together with its quotes, so the parser sees a number; any other VALUE replaces ``${KEY}`` as text.
    """
    for item in sets or []:
        key, value = _split_set(item)
        placeholder = "${" + key + "}"
        if placeholder not in text:
            logger.warning(f"-s {key}: {placeholder} does not appear in the spec file")
            continue
        number = _canonical_number(value)
        if number is not None:
            for quote in ('"', "'"):
                text = text.replace(f"{quote}{placeholder}{quote}", number)
        text = text.replace(placeholder, value if number is None else number)
    return text


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a key given twice (``json`` would keep the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse(text: str, path: Path, spec_file: str, substituted: bool) -> Any:
    hint = " (after -s substitution)" if substituted else ""
    is_json = path.suffix.lower() == ".json"
    try:
        if is_json:
            return _unshare(json.loads(text, object_pairs_hook=_json_object))
        return _unshare(yaml.load(text, Loader=_SpecYamlLoader))  # a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{spec_file}: invalid JSON{hint} at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_file}: invalid YAML{hint}: {exc}") from None
    except _DuplicateKey as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise SpecError(f"{spec_file}: key {exc.key!r} is given twice in one mapping{where}") from None
    except _TooLarge as exc:
        raise SpecError(f"{spec_file}: refused, {exc}") from None
    except RecursionError:
        raise SpecError(f"{spec_file}: refused, nested too deeply") from None


def _unshare(node: Any, budget: list[int] | None = None) -> Any:
    """A fresh tree of dicts and lists, so YAML aliases never make two spec keys share one object. Counts what it
    builds and stops past ``MAX_SPEC_VALUES``, so a file whose aliases expand exponentially fails fast."""
    budget = budget if budget is not None else [MAX_SPEC_VALUES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(f"more than {MAX_SPEC_VALUES:,} values once its YAML aliases are expanded")
    if isinstance(node, dict):
        return {k: _unshare(v, budget) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshare(v, budget) for v in node]
    return node


def _read_text(path: Path, spec_file: str) -> str:
    """The file's text, read with a size bound; unreadable, oversized or non-UTF-8 files are one-line errors."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{spec_file}: cannot read the spec file: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_FILE_BYTES:
        raise SpecError(f"{spec_file}: refused, a spec file holds at most {MAX_SPEC_FILE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{spec_file}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def load_spec_file(spec_file: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a spec file (JSON or YAML) after ``${var}`` substitution: the mapping ``{spec_name: spec}``."""
    path = resolve_spec_path(spec_file)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SpecError(f"{spec_file}: a spec file must end in .json, .yaml or .yml")
    text = substitute_vars(_read_text(path, str(spec_file)), sets)
    data = _parse(text, path, str(spec_file), bool(sets))
    if not isinstance(data, dict):
        raise SpecError(f"{spec_file}: expected a mapping of spec names to specs, got {type(data).__name__}")
    return data


def _placeholders(node: Any, path: str) -> list[tuple[str, str]]:
    """(dotted path, variable) for every ``${var}`` left in a parsed spec."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            found += [(sub, var) for var in _PLACEHOLDER.findall(str(key))]
            found += _placeholders(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _placeholders(value, f"{path}[{i}]")
    elif isinstance(node, str):
        found += [(path, var) for var in _PLACEHOLDER.findall(node)]
    return found
