"""TorchArc architectures: the ``modules`` + ``graph`` format of the torcharc package, built by torcharc itself.

The format, as a Python dict (YAML/JSON files hold the same)::

    {"modules": {"body": {"Sequential": [{"LazyLinear": {"out_features": 64}}, {"ReLU": None}]}},
     "graph": {"input": "x", "modules": {"body": ["x"]}, "output": "body"}}

- ``modules`` maps a name to one module spec ``{ClassName: kwargs}`` (kwargs a mapping, or null for none): any
  ``torch.nn`` class, torcharc's own modules (``Get``, ``Fork*``, ``Merge*``, ``TorchFn``, ...) and the lab's layers
  registered with it (``BatchRenorm1d``, ``LazyBatchRenorm1d``, ``WeightNormLinear``, ``LazyWeightNormLinear``,
  ``Concat``). ``Sequential`` takes a list of module specs; torcharc's compact form is also accepted.
- ``graph.input`` names the forward arguments (one name, or a list of names).
- ``graph.modules`` maps each module name to its inputs: a list (positional; a nested list passes a list of
  tensors) or a dict (keyword arguments), each name a graph input or a node listed earlier. ``name~tag`` calls
  module ``name`` again on other inputs (module reuse, shared weights).
- ``graph.output`` names what forward returns: one name (a tensor), a list (a tuple) or a dict.

torcharc turns the spec into a ``torch.fx.GraphModule``. Before that the lab checks the graph's names, so that a bad
arc fails with one ``SpecError`` naming its key instead of an error from inside torch.fx.
"""

from pathlib import Path
from typing import Any

import torcharc
import yaml
from pydantic import ValidationError
from torch import fx, nn

from slm_lab.agent.net.layers import (
    BatchRenorm1d,
    Concat,
    LazyBatchRenorm1d,
    LazyWeightNormLinear,
    WeightNormLinear,
)
from slm_lab.errors import SpecError

__all__ = ["LAB_MODULES", "build_arc", "graph_inputs", "load_arc", "modules_fed_by"]

LAB_MODULES: tuple[type[nn.Module], ...] = (
    BatchRenorm1d,
    LazyBatchRenorm1d,
    WeightNormLinear,
    LazyWeightNormLinear,
    Concat,
)
for _cls in LAB_MODULES:  # torcharc looks module names up in torch.nn
    if getattr(nn, _cls.__name__, None) is not _cls:
        torcharc.register_nn(_cls)

REUSE = "~"  # torcharc's delimiter: "conv~left" calls module "conv" on other inputs


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


def _names(value: Any, key: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{key}: expected a name or a non-empty list of names, got {value!r}")
    return names


def _flat_names(value: Any, key: str) -> list[str]:
    """The node names a module call uses: a list (nested lists allowed) or the values of a dict."""
    if isinstance(value, dict):
        return _names(list(value.values()), key)
    if isinstance(value, list) and value:
        return [n for item in value for n in (_flat_names(item, key) if isinstance(item, list) else [item])]
    return _names(value, key)


def _check_graph(arc: Any, key: str) -> None:
    """The names of the graph: inputs, the module each call uses, the nodes each call reads, the outputs."""
    if not isinstance(arc, dict):
        raise SpecError(f"{key}: expected a mapping with 'modules' and 'graph', got {arc!r}")
    for part in ("modules", "graph"):
        if not isinstance(arc.get(part), dict):
            raise SpecError(f"{key}.{part}: missing (an arc needs 'modules' and 'graph' mappings)")
    graph = arc["graph"]
    if "input" not in graph:
        raise SpecError(f"{key}.graph.input: missing; name the forward input(s), e.g. input: x")
    inputs = _names(graph["input"], f"{key}.graph.input")
    calls = graph.get("modules")
    if not isinstance(calls, dict) or not calls:
        raise SpecError(f"{key}.graph.modules: missing; map each module name to its input names")
    known = set(inputs)
    for name, args in calls.items():
        call_key = f"{key}.graph.modules.{name}"
        if str(name).split(REUSE, 1)[0] not in arc["modules"]:
            raise SpecError(f"{call_key}: no module {str(name).split(REUSE, 1)[0]!r} in {key}.modules")
        for arg in _flat_names(args, call_key):
            if arg not in known:
                raise SpecError(
                    f"{call_key}: input {arg!r} is neither a graph input ({', '.join(inputs)}) nor a module listed "
                    "before it"
                )
        known.add(name)
    if "output" not in graph:
        raise SpecError(f"{key}.graph.output: missing; name the module whose output the arc returns")
    output = graph["output"]
    outs = list(output.values()) if isinstance(output, dict) else _names(output, f"{key}.graph.output")
    for out in outs:
        if out not in known:
            raise SpecError(f"{key}.graph.output: {out!r} is neither a graph input nor a graph module")


def _validation_message(e: ValidationError, key: str) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{key}.{where}: {err['msg']}" if where else f"{key}: {err['msg']}"


def build_arc(arc: dict[str, Any], key: str = "agent.net.arc") -> fx.GraphModule:
    """The ``torch.fx.GraphModule`` an arc describes, built by torcharc (see the module docstring)."""
    _check_graph(arc, key)
    for name, spec in arc["modules"].items():
        module_key = f"{key}.modules.{name}"
        if isinstance(spec, dict) and len(spec) == 1:
            ((cls_name, kwargs),) = spec.items()
            if cls_name != "Sequential" and not hasattr(nn, str(cls_name)):
                raise SpecError(
                    f"{module_key}: unknown module {cls_name!r}; use a torch.nn class name, a torcharc module or "
                    f"one of {', '.join(c.__name__ for c in LAB_MODULES)}"
                )
            if kwargs is not None and not isinstance(kwargs, dict | list):
                raise SpecError(
                    f"{module_key}.{cls_name}: kwargs must be a mapping of keyword arguments or null, got {kwargs!r}"
                )
            if cls_name != "Sequential" and isinstance(kwargs, list):
                raise SpecError(
                    f"{module_key}.{cls_name}: torcharc takes keyword arguments, e.g. {{in_features: 4, "
                    f"out_features: 2}}, not a list {kwargs!r}"
                )
    try:
        return torcharc.build(arc)
    except ValidationError as e:
        raise SpecError(_validation_message(e, key)) from None
    except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as e:
        raise SpecError(f"{key}: torcharc cannot build it: {type(e).__name__}: {e}") from None


def graph_inputs(graph: fx.GraphModule) -> list[str]:
    """The names of a built arc's forward inputs."""
    return [node.target for node in graph.graph.nodes if node.op == "placeholder"]


def modules_fed_by(graph: fx.GraphModule, input_name: str) -> list[nn.Module]:
    """The modules a graph input is passed to directly, in graph order."""
    found = []
    for node in graph.graph.nodes:
        if node.op != "call_module":
            continue
        used: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), used.append)
        if any(n.op == "placeholder" and n.target == input_name for n in used):
            found.append(graph.get_submodule(node.target))
    return found
