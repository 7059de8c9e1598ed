"""TorchArcNet and the TorchArc-format builder: inline arcs, arc files, lazy layers, multi-input graphs, errors."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from slm_lab.agent.net import (
    NETS,
    BatchRenorm1d,
    LazyWeightNormLinear,
    TorchArcNet,
    WeightNormLinear,
    build_arc,
)
from slm_lab.errors import SpecError
from slm_lab.spec.schema import TorchArcNetSpec

ARC = {
    "modules": {
        "body": {
            "Sequential": [
                {"LazyLinear": {"out_features": 32}},
                {"LazyBatchRenorm1d": None},
                {"ReLU": None},
                {"LazyWeightNormLinear": {"out_features": 16}},
                {"Tanh": None},
            ]
        }
    },
    "graph": {"input": "x", "modules": {"body": ["x"]}, "output": "body"},
}
SPEC = {"type": "TorchArcNet", "arc": ARC, "init_fn": "orthogonal_"}


def test_inline_arc_materialises_lazy_layers() -> None:
    assert NETS.get("TorchArcNet") is TorchArcNet
    net = TorchArcNet(SPEC, 6, [2, 1])
    assert net.flat_input and net.training
    body = list(net.body.body)
    assert type(body[0]) is nn.Linear and body[0].in_features == 6
    assert type(body[1]) is BatchRenorm1d and body[1].num_features == 32
    assert int(body[1].num_batches_tracked) == 0  # the dummy forward ran in eval mode
    assert type(body[3]) is WeightNormLinear and body[3].in_features == 32
    assert net.tails[0].in_features == 16
    logits, value = net(torch.randn(8, 6))
    assert logits.shape == (8, 2) and value.shape == (8, 1)
    assert int(body[1].num_batches_tracked) == 1


def test_arc_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file, json_file = tmp_path / "arc.yaml", tmp_path / "arc.json"
    yaml_file.write_text(yaml.safe_dump(ARC))
    json_file.write_text(json.dumps(ARC))
    for path in (yaml_file, json_file):
        net = TorchArcNet({"type": "TorchArcNet", "arc_file": str(path)}, 5, 3)
        assert net(torch.randn(4, 5)).shape == (4, 3)
    with pytest.raises(SpecError, match=r"agent.net.arc_file: no such file"):
        TorchArcNet({"type": "TorchArcNet", "arc_file": str(tmp_path / "missing.yaml")}, 5, 3)


def test_multi_input_graph_and_dag() -> None:
    arc = {
        "modules": {
            "left": {"Linear": {"in_features": 3, "out_features": 4}},
            "right": {"Linear": {"in_features": 2, "out_features": 5}},
            "merge": {"Concat": None},
            "head": {"LazyLinear": {"out_features": 2}},
        },
        "graph": {
            "input": ["a", "b"],
            "modules": {"left": ["a"], "right": ["b"], "merge": ["left", "right"], "head": ["merge"]},
            "output": ["head", "merge"],
        },
    }
    graph = build_arc(arc)
    a, b = torch.randn(7, 3), torch.randn(7, 2)
    head, merge = graph(a, b=b)
    assert merge.shape == (7, 9) and head.shape == (7, 2)
    assert torch.allclose(merge[:, :4], graph.left(a))
    assert torch.allclose(merge[:, 4:], graph.right(b))


def test_one_input_dag_with_shared_branch() -> None:
    arc = {
        "modules": {
            "a": {"Linear": {"in_features": 4, "out_features": 3}},
            "b": {"Linear": {"in_features": 4, "out_features": 3}},
            "cat": {"Concat": {"dim": 1}},
        },
        "graph": {"input": "x", "modules": {"a": ["x"], "b": ["x"], "cat": ["a", "b"]}, "output": "cat"},
    }
    net = TorchArcNet({"type": "TorchArcNet", "arc": arc}, 4, 2)
    assert net.tails[0].in_features == 6 and net(torch.randn(3, 4)).shape == (3, 2)


def test_conv_arc_keeps_the_shape_flattens_and_normalizes() -> None:
    arc = {
        "modules": {
            "conv": {"Sequential": [{"LazyConv2d": {"out_channels": 4, "kernel_size": 3}}, {"ReLU": None}]}
        },
        "graph": {"input": "x", "modules": {"conv": ["x"]}, "output": "conv"},
    }
    net = TorchArcNet({"type": "TorchArcNet", "arc": arc, "normalize": True}, (2, 8, 8), 3)
    assert not net.flat_input and net.tails[0].in_features == 4 * 6 * 6
    x = torch.randint(0, 256, (5, 2, 8, 8), dtype=torch.uint8)
    out = net(x)
    assert out.shape == (5, 3)
    net.normalize = False
    assert torch.allclose(out, net(x.float() / 255.0), atol=1e-6)
    with pytest.raises(SpecError, match="observation shape"):
        TorchArcNet({"type": "TorchArcNet", "arc": arc}, 128, 3)


def test_weight_norm_linear_matches_torch_weight_norm() -> None:
    ref = nn.utils.parametrizations.weight_norm(nn.Linear(5, 3))
    layer = WeightNormLinear(5, 3)
    layer.set_weight(ref.weight.detach())
    layer.bias.data.copy_(ref.bias.detach())
    x = torch.randn(4, 5)
    assert torch.allclose(layer(x), ref(x), atol=1e-6)
    with torch.no_grad():
        layer.weight_g.mul_(2.0)  # g sets each row's norm independently of v's direction
    assert torch.allclose(layer.weight.norm(dim=1), 2 * ref.weight.norm(dim=1), atol=1e-5)
    lazy = LazyWeightNormLinear(3)
    assert lazy(x).shape == (4, 3) and type(lazy) is WeightNormLinear


@pytest.mark.parametrize(
    "arc, match",
    [
        ({"modules": {"m": {"NoSuchLayer": None}}, "graph": {"input": "x", "modules": {"m": ["x"]}, "output": "m"}},
         r"agent.net.arc.modules.m: unknown module 'NoSuchLayer'"),
        ({"modules": {"m": {"ReLU": None}}, "graph": {"modules": {"m": ["x"]}, "output": "m"}},
         r"agent.net.arc.graph.input: missing"),
        ({"modules": {"m": {"ReLU": None}}, "graph": {"input": "x", "modules": {"m": ["y"]}, "output": "m"}},
         r"agent.net.arc.graph.modules.m: input 'y' is neither a graph input"),
        ({"modules": {"m": {"ReLU": None}}, "graph": {"input": "x", "modules": {"n": ["x"]}, "output": "n"}},
         r"agent.net.arc.graph.modules.n: no module 'n'"),
        ({"modules": {"m": {"Linear": {"bad": 1}}}, "graph": {"input": "x", "modules": {"m": ["x"]}, "output": "m"}},
         r"agent.net.arc: torcharc cannot build it: TypeError: .*bad"),
        ({"modules": {"m": {"Linear": [4, 2]}}, "graph": {"input": "x", "modules": {"m": ["x"]}, "output": "m"}},
         r"agent.net.arc.modules.m.Linear: torcharc takes keyword arguments"),
        ({"modules": {"m": {"ReLU": None}}}, r"agent.net.arc.graph: missing"),
    ],
)  # fmt: skip
def test_bad_arcs_name_the_key(arc: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        TorchArcNet({"type": "TorchArcNet", "arc": arc}, 4, 2)


def test_the_torcharc_format_reuses_modules_and_passes_nested_lists() -> None:
    """What torcharc's format adds: ``name~tag`` calls a module again (shared weights), a nested list passes a list
    of tensors, and torcharc's own modules (here MergeConcat) are available."""
    arc = {
        "modules": {
            "enc": {"Linear": {"in_features": 3, "out_features": 4}},
            "merge": {"MergeConcat": None},
        },
        "graph": {
            "input": ["a", "b"],
            "modules": {"enc~a": ["a"], "enc~b": ["b"], "merge": [["enc~a", "enc~b"]]},
            "output": "merge",
        },
    }
    graph = build_arc(arc)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    out = graph(a, b)
    assert out.shape == (5, 8)
    assert torch.equal(out[:, :4], graph.enc(a)) and torch.equal(out[:, 4:], graph.enc(b))
    assert len(list(graph.parameters())) == 2  # one Linear, used twice


def test_spec_model_needs_exactly_one_arc() -> None:
    assert TorchArcNetSpec.model_validate(SPEC).shared is False
    with pytest.raises(Exception, match="exactly one of arc"):
        TorchArcNetSpec.model_validate({"type": "TorchArcNet"})
    with pytest.raises(SpecError, match="exactly one of arc"):
        TorchArcNet({"type": "TorchArcNet"}, 4, 2)
