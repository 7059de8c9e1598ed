"""The committed benchmark: docs/BENCHMARKS.md is what bin/benchmark-table computes from docs/benchmark/data/, each
committed run folder re-analyses to the MA it shows, and the tool refuses cells that are not fair runs."""

import importlib.machinery
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from slm_lab.cli.retro import retro_analyze
from slm_lab.experiment import analysis

ROOT = Path(__file__).resolve().parent.parent


def load_tool() -> ModuleType:
    path = ROOT / "bin" / "benchmark-table"
    loader = importlib.machinery.SourceFileLoader("benchmark_table", str(path))
    spec = importlib.util.spec_from_loader("benchmark_table", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


tool = load_tool()
REFERENCE = tool.read_json(tool.REFERENCE)
FOLDERS = sorted(p for p in tool.DATA.iterdir() if p.is_dir())


def test_the_doc_tables_are_what_the_data_gives() -> None:
    by_env = tool.load_cells(tool.DATA, REFERENCE)
    doc = tool.DOC.read_text()
    assert tool.render(doc, by_env, REFERENCE, tool.DOC.parent) == doc, "run bin/benchmark-table"
    for env in REFERENCE["envs"]:
        assert f"## {env}\n" in doc and f"<!-- table:{env} -->" in doc
        assert f"plots/{env}_multi_trial_graph_mean_returns_ma_vs_frames.png" in doc
    for env, cells in by_env.items():
        assert (tool.PLOTS / f"{env}_multi_trial_graph_mean_returns_ma_vs_frames.png").is_file(), env
        for cell in cells:
            assert not (cell.folder / "model").exists()


TRIAL_KEYS = ("total_reward_ma", "total_reward_ma_iqm", "total_reward_ma_iqm_ci_low", "frame")


def _recorded(folder: Path) -> dict:
    return tool.read_json(next(folder.glob("*_t0_trial_metrics_scalar.json")))


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_a_committed_run_recomputes_its_ma_from_its_csvs(folder: Path) -> None:
    """The session CSVs give the trial metrics the table shows (the metric functions slm-retro uses, without
    redrawing the graphs)."""
    spec = tool.read_json(tool.trial_spec_path(folder))
    assert spec["meta"]["predir"] == f"data/{folder.name}"  # collected: no machine's absolute paths
    csvs = sorted(folder.glob(f"info/{spec['name']}_t0_s*_session_df_train.csv"))
    assert len(csvs) == tool.MAX_SESSION
    sessions = [
        analysis.calc_session_metrics(pd.read_csv(path).astype(np.float32), spec["env"]["name"])
        for path in csvs
    ]
    trial = analysis.calc_trial_metrics(sessions)["scalar"]
    recorded = _recorded(folder)
    for key in TRIAL_KEYS:
        assert trial[key] == pytest.approx(recorded[key], abs=1e-6), key


def test_slm_retro_on_a_copy_of_a_committed_run_gives_the_same_ma(tmp_path: Path) -> None:
    folder = FOLDERS[0]
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    (metrics,) = retro_analyze(copy)
    recorded = _recorded(folder)
    for key in TRIAL_KEYS:
        assert metrics["scalar"][key] == pytest.approx(recorded[key], abs=1e-6), key


def _cell_copy(tmp_path: Path, edit: dict) -> Path:
    """A copy of the first committed cell with its trial spec's sections updated by ``edit``."""
    src = FOLDERS[0]
    data = tmp_path / "data"
    dst = data / src.name
    shutil.copytree(src, dst)
    spec_path = tool.trial_spec_path(dst)
    spec = json.loads(spec_path.read_text())
    for section, values in edit.items():
        spec[section].update(values)
    spec_path.write_text(json.dumps(spec))
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"meta": {"max_session": 2}}, "max_session is 2"),
        ({"env": {"max_frame": 10_000_000}}, "over the budget"),
        ({"meta": {"random_seed": None}}, "no recorded meta.random_seed"),
        ({"meta": {"git_sha": "0" * 40}}, "is not a commit"),
        ({"agent": {"name": "renamed"}}, "differs from the shipped one"),
    ],
)
def test_an_unfair_cell_is_refused(edit: dict, message: str, tmp_path: Path) -> None:
    if message == "is not a commit" and tool.git_has_commit("HEAD") is not True:
        pytest.skip("no git history here to check a SHA against")
    data = _cell_copy(tmp_path, edit)
    with pytest.raises(tool.BenchmarkError, match=message):
        tool.load_cells(data, REFERENCE)


def test_two_runs_of_one_cell_are_refused(tmp_path: Path) -> None:
    data = _cell_copy(tmp_path, {})
    shutil.copytree(data / FOLDERS[0].name, data / f"{FOLDERS[0].name}_again")
    with pytest.raises(tool.BenchmarkError, match="two runs for"):
        tool.load_cells(data, REFERENCE)


def test_collect_leaves_out_models_and_machine_paths(tmp_path: Path) -> None:
    run = tmp_path / "somewhere" / "data" / "x_2026_01_01_000000"
    (run / "model").mkdir(parents=True)
    (run / "info").mkdir()
    (run / "model" / "x_t0_s0_net_model.pt").write_bytes(b"weights")
    (run / "x_t0_spec.json").write_text(json.dumps({"meta": {"predir": str(run)}}))
    (run / "info" / "x_t0_s0_session_df_train.csv").write_text("frame\n1\n")
    out = tmp_path / "collected"
    out.mkdir()
    tool.collect([run], out)
    got = out / run.name
    assert not (got / "model").exists()
    assert json.loads((got / "x_t0_spec.json").read_text())["meta"]["predir"] == f"data/{run.name}"
    assert (got / "info" / "x_t0_s0_session_df_train.csv").read_text() == "frame\n1\n"
    with pytest.raises(tool.BenchmarkError, match="exists already"):
        tool.collect([run], out)


def test_collect_keeps_a_search_as_its_spec_experiment_df_and_graphs(tmp_path: Path) -> None:
    run = tmp_path / "data" / "s_search_2026_01_01_000000"
    (run / "info").mkdir(parents=True)
    (run / "model").mkdir()
    for name in ("s_search_experiment_df.csv", "s_search_multi_trial_graph_mean_returns_ma_vs_frames.png"):
        (run / name).write_text("x")
    (run / "s_search_spec.json").write_text(json.dumps({"meta": {"predir": str(run)}}))
    (run / "s_search_t0_spec.json").write_text("{}")
    data, searches = tmp_path / "cells", tmp_path / "searches"
    tool.collect([run], data, searches)
    got = searches / run.name
    assert sorted(p.name for p in got.iterdir()) == [
        "s_search_experiment_df.csv", "s_search_multi_trial_graph_mean_returns_ma_vs_frames.png",
        "s_search_spec.json",
    ]  # fmt: skip
    assert json.loads((got / "s_search_spec.json").read_text())["meta"]["predir"] == f"data/{run.name}"
    assert not data.exists()
