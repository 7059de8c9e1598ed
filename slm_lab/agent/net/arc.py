"""A builder for TorchArc-format architecture specs (the ``modules`` + ``graph`` format of TorchArc 2).

The format, as a Python dict (YAML/JSON files hold the same)::

    {"modules": {"body": {"Sequential": [{"LazyLinear": {"out_features": 64}}, {"ReLU": None}]}},
     "graph": {"input": "x", "modules": {"body": ["x"]}, "output": "body"}}

- ``modules`` maps a name to one module spec ``{ClassName: kwargs}``: any ``torch.nn`` module class, or one of the
  lab's extra layers (``BatchRenorm1d``, ``LazyBatchRenorm1d``, ``WeightNormLinear``, ``LazyWeightNormLinear``,
  ``Concat``). kwargs is a dict, a list (positional arguments) or null. ``Sequential`` takes a list of module specs.
- ``graph.input`` names the forward arguments (one name, or a list of names).
- ``graph.modules`` maps each module name to the names it is called with: a list (positional) or a dict (keyword
  arguments), each name a graph input or a module listed earlier. So a chain, a DAG with shared branches, and a
  module taking several inputs (e.g. ``Concat``) are all expressible.
- ``graph.output`` names what forward returns: one name (a tensor), a list (a tuple) or a dict.

The torcharc package that reads this format (2.x) is not a dependency, so the lab builds it itself; the format is
small enough that a few dozen lines cover it, and every bad spec fails here with a ``SpecError`` naming the key.
"""

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from slm_lab.agent.net.layers import (
    BatchRenorm1d,
    Concat,
    LazyBatchRenorm1d,
    LazyWeightNormLinear,
    WeightNormLinear,
)
from slm_lab.errors import SpecError

__all__ = ["ARC_MODULES", "ArcGraph", "build_arc", "build_module", "load_arc"]

_EXTRA: tuple[type[nn.Module], ...] = (
    BatchRenorm1d,
    LazyBatchRenorm1d,
    WeightNormLinear,
    LazyWeightNormLinear,
    Concat,
)
ARC_MODULES: dict[str, type[nn.Module]] = {
    **{
        name: cls
        for name in dir(nn)
        if isinstance(cls := getattr(nn, name), type)
        and issubclass(cls, nn.Module)
        and not name.startswith("_")
    },
    **{cls.__name__: cls for cls in _EXTRA},
}


def load_arc(arc_file: str | Path, key: str = "agent.net.arc_file") -> dict[str, Any]:
    """Read an arc from a YAML or JSON file (JSON is YAML, so one parser reads both)."""
    path = Path(arc_file)
    if not path.is_file():
        raise SpecError(f"{key}: no such file {str(arc_file)!r}")
    try:
        arc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{key}: cannot parse {str(arc_file)!r}: {e}") from None
    if not isinstance(arc, dict):
        raise SpecError(f"{key}: {str(arc_file)!r} must hold a mapping with 'modules' and 'graph'")
    return arc


def build_module(spec: Any, key: str) -> nn.Module:
    """One module from ``{ClassName: kwargs}``; ``Sequential`` takes a list of such specs."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise SpecError(f"{key}: expected one {{ClassName: kwargs}} mapping, got {spec!r}")
    ((name, kwargs),) = spec.items()
    if name == "Sequential":
        if not isinstance(kwargs, list) or not kwargs:
            raise SpecError(f"{key}.Sequential: expected a non-empty list of module specs, got {kwargs!r}")
        return nn.Sequential(*(build_module(s, f"{key}.Sequential[{i}]") for i, s in enumerate(kwargs)))
    cls = ARC_MODULES.get(name)
    if cls is None:
        raise SpecError(
            f"{key}: unknown module {name!r}; use a torch.nn class name or one of "
            f"{', '.join(c.__name__ for c in _EXTRA)}"
        )
    try:
        if kwargs is None:
            return cls()
        if isinstance(kwargs, list):
            return cls(*kwargs)
        if isinstance(kwargs, dict):
            return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{key}.{name}: bad arguments {kwargs!r}: {e}") from None
    raise SpecError(f"{key}.{name}: kwargs must be a mapping, a list or null, got {kwargs!r}")


def _names(value: Any, key: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{key}: expected a name or a non-empty list of names, got {value!r}")
    return names


class ArcGraph(nn.Module):
    """The modules of an arc called in graph order; ``forward`` takes the graph inputs, positionally or by name."""

    def __init__(self, arc: dict[str, Any], key: str = "agent.net.arc") -> None:
        super().__init__()
        if not isinstance(arc, dict):
            raise SpecError(f"{key}: expected a mapping with 'modules' and 'graph', got {arc!r}")
        for part in ("modules", "graph"):
            if not isinstance(arc.get(part), dict):
                raise SpecError(f"{key}.{part}: missing (an arc needs 'modules' and 'graph' mappings)")
        graph: dict[str, Any] = arc["graph"]
        if "input" not in graph:
            raise SpecError(f"{key}.graph.input: missing; name the forward input(s), e.g. input: x")
        self.inputs = _names(graph["input"], f"{key}.graph.input")
        self.arc_modules = nn.ModuleDict(
            {name: build_module(spec, f"{key}.modules.{name}") for name, spec in arc["modules"].items()}
        )
        calls = graph.get("modules")
        if not isinstance(calls, dict) or not calls:
            raise SpecError(f"{key}.graph.modules: missing; map each module name to its input names")
        known = set(self.inputs)
        self.calls: list[tuple[str, list[str] | dict[str, str]]] = []
        for name, args in calls.items():
            call_key = f"{key}.graph.modules.{name}"
            if name not in self.arc_modules:
                raise SpecError(f"{call_key}: no module {name!r} in {key}.modules")
            used = list(args.values()) if isinstance(args, dict) else _names(args, call_key)
            for arg in used:
                if arg not in known:
                    raise SpecError(
                        f"{call_key}: input {arg!r} is neither a graph input ({', '.join(self.inputs)}) nor a module "
                        "listed before it"
                    )
            self.calls.append((name, dict(args) if isinstance(args, dict) else list(used)))
            known.add(name)
        if "output" not in graph:
            raise SpecError(f"{key}.graph.output: missing; name the module whose output the arc returns")
        self.output: str | list[str] | dict[str, str] = graph["output"]
        outs = (
            list(self.output.values())
            if isinstance(self.output, dict)
            else _names(self.output, f"{key}.graph.output")
        )
        for out in outs:
            if out not in known:
                raise SpecError(f"{key}.graph.output: {out!r} is neither a graph input nor a graph module")

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> Any:
        if len(args) > len(self.inputs):
            raise TypeError(f"ArcGraph takes inputs {self.inputs}, got {len(args)} positional tensors")
        values: dict[str, Any] = dict(zip(self.inputs, args, strict=False))
        values.update(kwargs)
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise TypeError(f"ArcGraph: missing input(s) {missing}")
        for name, call_args in self.calls:
            module = self.arc_modules[name]
            if isinstance(call_args, dict):
                values[name] = module(**{k: values[v] for k, v in call_args.items()})
            else:
                values[name] = module(*(values[a] for a in call_args))
        if isinstance(self.output, str):
            return values[self.output]
        if isinstance(self.output, dict):
            return {k: values[v] for k, v in self.output.items()}
        return tuple(values[n] for n in self.output)


def build_arc(arc: dict[str, Any], key: str = "agent.net.arc") -> ArcGraph:
    """The module an arc describes (see the module docstring for the format)."""
    return ArcGraph(arc, key)
