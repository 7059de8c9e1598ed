"""Metric formulas against hand-computed values, console formatting, and the files written by the analysis."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loguru import logger

from slm_lab.experiment import analysis
from slm_lab.lib import random_baseline
from slm_lab.lib.io_util import read_json, write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
R_RAND = 5.0
NAN = math.nan


@pytest.fixture
def logs():
    """Messages logged by loguru at WARNING and above during the test."""
    messages: list[str] = []
    sink_id = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink_id)


@pytest.fixture
def baseline(monkeypatch):
    monkeypatch.setattr(
        random_baseline, "get_random_baseline", lambda env_name, compute_missing=False: R_RAND
    )


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("PY_ENV", raising=False)


def tiny_df() -> pd.DataFrame:
    """4 checkpoints; the first before any episode (NaN return, D39). With R_rand = 5: s = [nan, 5, 25, 15]."""
    return pd.DataFrame(
        {
            "total_reward": [NAN, 10.0, 30.0, 20.0],
            "total_reward_ma": [NAN, 10.0, 20.0, 20.0],
            "loss": [NAN, 0.5, 0.25, 0.125],
            "fps": [100.0, 100.0, 100.0, 100.0],
            "frame": [100.0, 200.0, 300.0, 400.0],
            "wall_t": [1.0, 2.0, 3.0, 4.0],
            "t": [100.0, 200.0, 300.0, 400.0],
            "epi": [0.0, 1.0, 2.0, 3.0],
            "opt_step": [0.0, 0.0, 10.0, 20.0],
            "lr": [0.001, 0.001, 0.001, 0.001],
            "explore_var": [NAN, NAN, NAN, NAN],
        }
    )


def make_spec(predir: Path, trial: int = 0, session: int = -1, max_session: int = 2) -> dict:
    for sub in ("info", "graph", "log", "model"):
        (predir / sub).mkdir(parents=True, exist_ok=True)
    return {
        "name": "demo",
        "env": {"name": "CartPole-v1"},
        "meta": {"predir": str(predir), "trial": trial, "session": session, "max_session": max_session},
    }


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------------------------
# pure functions


def test_total_reward_ma_skips_nan_and_uses_last_100():
    assert analysis.calc_total_reward_ma([NAN, 10.0, 30.0, 20.0]) == 20.0
    returns = [1000.0] * 5 + [1.0] * 100
    assert analysis.calc_total_reward_ma(returns) == 1.0
    assert math.isnan(analysis.calc_total_reward_ma([NAN, NAN]))


def test_strength_family():
    s = analysis.calc_strengths([NAN, 10.0, 30.0, 20.0], R_RAND)
    np.testing.assert_array_equal(s, [NAN, 5.0, 25.0, 15.0])
    assert analysis.calc_strength(s) == 15.0
    assert analysis.calc_max_strength(s) == 25.0
    assert analysis.calc_final_strength(s) == 15.0


def test_sample_efficiency_by_hand():
    s = [NAN, 5.0, 25.0, 15.0]
    frames = [100.0, 200.0, 300.0, 400.0]
    eff, local = analysis.calc_efficiency(s, frames)
    # numerator 5/200 + 25/300 + 15/400 (the NaN term dropped), denominator 5 + 25 + 15
    assert eff == pytest.approx((0.025 + 25 / 300 + 0.0375) / 45)
    np.testing.assert_allclose(
        local, [NAN, 0.025 / 5, (0.025 + 25 / 300) / 30, (0.025 + 25 / 300 + 0.0375) / 45]
    )


def test_training_efficiency_drops_inf_from_numerator_only():
    """D13: s/o is inf where o = 0; the term leaves the numerator but its strength stays in the denominator."""
    s = [NAN, 5.0, 25.0, 15.0]
    opt_steps = [0.0, 0.0, 10.0, 20.0]
    eff, local = analysis.calc_efficiency(s, opt_steps)
    assert eff == pytest.approx((2.5 + 0.75) / 45)
    np.testing.assert_allclose(local, [NAN, 0.0, 2.5 / 30, 3.25 / 45])


def test_stability_by_hand():
    s = [NAN, 5.0, 25.0, 15.0]
    sta, local = analysis.calc_stability(s)
    # drops [nan, 0, -10] over s_i [nan, 5, 25]: 1 - |-10 / 30|
    assert sta == pytest.approx(1 - 10 / 30)
    np.testing.assert_allclose(local, [NAN, 1.0, 1 - 10 / 25])
    sta1, local1 = analysis.calc_stability([3.0])
    assert math.isnan(sta1) and local1.size == 0


def test_stability_monotone_is_one():
    sta, local = analysis.calc_stability([1.0, 2.0, 3.0, 4.0])
    assert sta == 1.0
    np.testing.assert_array_equal(local, [1.0, 1.0, 1.0])


def test_consistency_two_sessions_by_hand():
    con, local = analysis.calc_consistency([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0]])
    # truncated to 3 checkpoints: mu = [2, 3, 4], sigma (ddof 1) = sqrt(2) each
    assert con == pytest.approx(1 - 2 * 3 * math.sqrt(2) / 9)
    np.testing.assert_allclose(local, 1 - 2 * math.sqrt(2) / np.array([2.0, 3.0, 4.0]))


def test_consistency_identical_sessions_and_single_session():
    con, local = analysis.calc_consistency([[1.0, 2.0], [1.0, 2.0]])
    assert con == 1.0
    np.testing.assert_array_equal(local, [1.0, 1.0])
    con1, local1 = analysis.calc_consistency([[1.0, 2.0]])
    assert math.isnan(con1) and len(local1) == 2


def test_consistency_skips_nan_checkpoints():
    con, _ = analysis.calc_consistency([[NAN, 1.0, 2.0], [NAN, 3.0, 4.0]])
    assert con == pytest.approx(1 - 2 * 2 * math.sqrt(2) / 5)


def test_session_metrics_tiny_df(baseline):
    metrics = analysis.calc_session_metrics(tiny_df(), "CartPole-v1")
    scalar, local = metrics["scalar"], metrics["local"]
    assert list(scalar) == analysis.SESSION_SCALAR_KEYS
    assert list(local) == analysis.SESSION_LOCAL_KEYS
    assert scalar["total_reward_ma"] == 20.0
    assert scalar["strength"] == 15.0
    assert scalar["max_strength"] == 25.0
    assert scalar["final_strength"] == 15.0
    assert scalar["sample_efficiency"] == pytest.approx((0.025 + 25 / 300 + 0.0375) / 45)
    assert scalar["training_efficiency"] == pytest.approx(3.25 / 45)
    assert scalar["stability"] == pytest.approx(2 / 3)
    assert local["frames"] == [100.0, 200.0, 300.0, 400.0]
    assert local["opt_steps"] == [0.0, 0.0, 10.0, 20.0]
    assert local["strengths"][1:] == [5.0, 25.0, 15.0]
    assert len(local["stabilities"]) == 3


def test_session_metrics_short_df_nan_and_warning(baseline, logs):
    df = tiny_df().iloc[:2]  # one checkpoint with a return
    metrics = analysis.calc_session_metrics(df, "CartPole-v1")
    assert all(math.isnan(v) for v in metrics["scalar"].values())
    assert len(logs) == 1 and "metrics are NaN" in logs[0]
    empty = analysis.calc_session_metrics(tiny_df().iloc[:0], "CartPole-v1")
    assert all(math.isnan(v) for v in empty["scalar"].values())


def test_missing_baseline_uses_zero_and_warns_once(monkeypatch, logs):
    monkeypatch.setattr(random_baseline, "get_random_baseline", lambda env_name, compute_missing=False: None)
    monkeypatch.setattr(analysis, "_warned_no_baseline", set())
    m1 = analysis.calc_session_metrics(tiny_df(), "NoSuchEnv-v0")
    analysis.calc_session_metrics(tiny_df(), "NoSuchEnv-v0")
    assert m1["scalar"]["strength"] == 20.0  # mean of returns, R_rand = 0
    assert len([m for m in logs if "No random baseline" in m]) == 1


def session_metrics(strengths: list[float], frames: list[float], scalar_value: float) -> dict:
    scalar = dict.fromkeys(analysis.SESSION_SCALAR_KEYS, scalar_value)
    local = {key: list(strengths) for key in analysis.SESSION_LOCAL_KEYS}
    local["frames"] = frames
    local["opt_steps"] = [f / 10 for f in frames]
    return {"scalar": scalar, "local": local}


def test_trial_metrics():
    m0 = session_metrics([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 1.0)
    m1 = session_metrics([3.0, 4.0, 5.0, 6.0], [10.0, 20.0, 30.0, 40.0], 3.0)
    m1["scalar"]["stability"] = NAN  # a NaN session scalar is skipped by the mean
    trial = analysis.calc_trial_metrics([m0, m1])
    scalar, local = trial["scalar"], trial["local"]
    assert (
        list(scalar) == analysis.METRICS_COLS + analysis.TRIAL_STATS_KEYS
    )  # the reference keys first, in order
    assert scalar["total_reward_ma_iqm"] == 2.0  # n = 2: nothing trimmed, the mean of 1 and 3
    assert scalar["total_reward_ma_iqm_ci_low"] == 1.0 and scalar["total_reward_ma_iqm_ci_high"] == 3.0
    assert scalar["frame"] == 30.0
    assert scalar["strength"] == 2.0
    assert scalar["total_reward_ma"] == 2.0
    assert scalar["stability"] == 1.0
    assert scalar["consistency"] == pytest.approx(1 - 2 * 3 * math.sqrt(2) / 9)
    assert local["strengths"] == [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0]]
    assert local["frames"] == [10.0, 20.0, 30.0]
    assert local["opt_steps"] == [1.0, 2.0, 3.0]
    assert len(local["consistencies"]) == 3
    assert set(local) == {*analysis.TRIAL_SESSION_SERIES, "consistencies", "frames", "opt_steps"}


# ---------------------------------------------------------------------------------------------------------------
# console formatting


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("frame", 200000.0, "2.00e+05"),
        ("frame", 10000, "1.00e+04"),
        ("total_reward", 21.0, "21.00"),
        ("total_reward_ma", 471.356, "471.36"),
        ("strength", 449.2, "449.2"),
        ("sample_efficiency", 1.19341e-05, "1.193e-05"),
        ("training_efficiency", 0.000441123, "0.0004411"),
        ("stability", 0.981234, "0.9812"),
        ("loss", NAN, "nan"),
        ("total_reward", NAN, "nan"),
        ("frame", np.float32("nan"), "nan"),
        ("opt_step", 1200.0, "1200"),
        ("epi", 7, "7"),
        ("wall_t", np.float32(13.0), "13"),
        ("fps", np.int64(512), "512"),
        ("lr", 0.0003, "0.0003"),
        ("lr", np.float32(0.25), "0.25"),
    ],
)
def test_format_metric_value(key, value, expected):
    assert analysis.format_metric_value(key, value) == expected


def test_trial_metrics_line_exact():
    scalar = {
        "frame": 2e5,
        "total_reward_ma": 471.36,
        "strength": 449.2,
        "max_strength": 478.6,
        "final_strength": 477.4,
        "sample_efficiency": 1.193e-05,
        "training_efficiency": 0.0004411,
        "stability": 0.9812,
        "consistency": 0.9367,
    }
    expected = (
        "trial_metrics: frame:2.00e+05 | total_reward_ma:471.36 | strength:449.2 | max_strength:478.6 | "
        "final_strength:477.4 | sample_efficiency:1.193e-05 | training_efficiency:0.0004411 | stability:0.9812 | "
        "consistency:0.9367"
    )
    assert analysis.trial_metrics_line(scalar) == expected
    scalar["consistency"] = NAN
    assert analysis.trial_metrics_line(scalar).endswith(" | stability:0.9812 | consistency:nan")


def test_format_checkpoint_block_exact():
    row = {
        "total_reward": 10.5,
        "total_reward_ma": 9.25,
        "loss": 0.1234567,
        "fps": 1234.0,
        "frame": 1e4,
        "wall_t": 8,
    }
    block = analysis.format_checkpoint_block("Trial 0 session 1 demo_t0_s1 [train]", row)
    assert block == (
        "Trial 0 session 1 demo_t0_s1 [train]\n"
        "total_reward:10.50    total_reward_ma:9.25  loss:0.1235           fps:1234\n"
        "frame:1.00e+04        wall_t:8"
    )


# ---------------------------------------------------------------------------------------------------------------
# files


def test_analyze_session_writes_files(tmp_path, baseline, headless, check_graph):
    spec = make_spec(tmp_path, session=1)
    metrics = analysis.analyze_session(spec, tiny_df(), "train")
    pre = "demo_t0_s1"
    assert files_under(tmp_path) == {
        f"info/{pre}_session_df_train.csv",
        f"info/{pre}_session_metrics_train.json",
        f"info/{pre}_session_metrics_scalar_train.json",
        *(
            f"graph/{pre}_session_graph_train_{graph}.{ext}"
            for graph in ("mean_returns_vs_frames", "mean_returns_ma_vs_frames", "loss_vs_frame")
            for ext in ("png", "html")
        ),  # explore_var is all NaN: no graph
        "graph/plotly.min.js",  # the script the pages load
    }
    for graph in [*tmp_path.glob("graph/*.png"), *tmp_path.glob("graph/*.html")]:
        check_graph(graph)
    df = pd.read_csv(tmp_path / f"info/{pre}_session_df_train.csv")
    assert list(df.columns) == list(tiny_df().columns)
    saved = read_json(tmp_path / f"info/{pre}_session_metrics_train.json")
    assert set(saved) == {"scalar", "local"}
    assert saved["scalar"] == pytest.approx(metrics["scalar"])
    assert read_json(tmp_path / f"info/{pre}_session_metrics_scalar_train.json") == saved["scalar"]


def test_analyze_session_no_plot_and_test_mode(tmp_path, baseline, monkeypatch):
    spec = make_spec(tmp_path, session=0)
    analysis.analyze_session(spec, tiny_df(), "eval", plot=False)
    monkeypatch.setenv("PY_ENV", "test")
    analysis.analyze_session(spec, tiny_df(), "train")
    assert not list(tmp_path.glob("graph/*"))
    assert len(list(tmp_path.glob("info/*"))) == 6


def test_analyze_trial_writes_files(tmp_path, baseline, headless):
    spec = make_spec(tmp_path)
    metrics_list = []
    for s in range(2):
        df = tiny_df()
        df["total_reward"] += 2 * s
        metrics_list.append(analysis.analyze_session(make_spec(tmp_path, session=s), df, "eval", plot=False))
    trial = analysis.analyze_trial(spec, metrics_list)
    assert list(trial["scalar"])[: len(analysis.METRICS_COLS)] == analysis.METRICS_COLS
    assert trial["scalar"]["frame"] == 400.0
    expected_new = {
        "info/demo_t0_trial_metrics.json",
        "info/demo_t0_trial_metrics_scalar.json",
        "graph/demo_t0_trial_graph_mean_returns_vs_frames.png",
        "graph/demo_t0_trial_graph_mean_returns_ma_vs_frames.png",
        "graph/demo_t0_trial_graph_mean_returns_vs_frames.html",
        "graph/demo_t0_trial_graph_mean_returns_ma_vs_frames.html",
        "demo_t0_trial_metrics_scalar.json",
        "demo_t0_trial_graph_mean_returns_vs_frames.png",  # the run folder gets copies of the two PNGs
        "demo_t0_trial_graph_mean_returns_ma_vs_frames.png",
    }
    assert expected_new <= files_under(tmp_path)
    assert {f for f in files_under(tmp_path) if "_trial_" in f} == expected_new
    top_png = (tmp_path / "demo_t0_trial_graph_mean_returns_vs_frames.png").read_bytes()
    assert top_png[:8] == PNG_MAGIC
    assert top_png == (tmp_path / "graph/demo_t0_trial_graph_mean_returns_vs_frames.png").read_bytes()
    saved = read_json(tmp_path / "info/demo_t0_trial_metrics.json")
    assert set(saved) == {"scalar", "local"}
    assert read_json(tmp_path / "demo_t0_trial_metrics_scalar.json") == saved["scalar"]


def test_load_session_metrics_orders_by_session(tmp_path):
    spec = make_spec(tmp_path)
    for s in (10, 2, 0):
        write_json(
            tmp_path / f"info/demo_t0_s{s}_session_metrics_train.json", {"scalar": {"s": s}, "local": {}}
        )
        write_json(tmp_path / f"info/demo_t0_s{s}_session_metrics_scalar_train.json", {"s": -1})
    write_json(tmp_path / "info/demo_t1_s1_session_metrics_train.json", {"scalar": {"s": -1}, "local": {}})
    write_json(tmp_path / "info/demo_t0_s3_session_metrics_eval.json", {"scalar": {"s": -1}, "local": {}})
    loaded = analysis.load_session_metrics(spec, "train")
    assert [m["scalar"]["s"] for m in loaded] == [0, 2, 10]
    assert analysis.load_session_metrics(make_spec(tmp_path / "empty")) == []


# ---------------------------------------------------------------------------------------------------------------
# random baselines


def test_shipped_random_baseline():
    random_baseline.clear_cache()
    table = random_baseline.load_random_baselines()
    assert {"CartPole-v1", "LunarLander-v3", "Pendulum-v1"} <= set(table)
    assert list(read_json(random_baseline.SHIPPED_PATH)) == sorted(read_json(random_baseline.SHIPPED_PATH))
    assert random_baseline.get_random_baseline("CartPole-v1") == table["CartPole-v1"]["mean"]
    assert 15 < random_baseline.get_random_baseline("CartPole-v1") < 30
    assert random_baseline.get_random_baseline("NoSuchEnv-v0") is None


def test_random_baseline_on_demand_goes_to_user_cache(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped.json"
    write_json(shipped, {})
    monkeypatch.setattr(random_baseline, "SHIPPED_PATH", shipped)
    monkeypatch.setattr(random_baseline, "REFERENCE_PATH", tmp_path / "no_reference.json")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    random_baseline.clear_cache()
    try:
        value = random_baseline.get_random_baseline("CartPole-v1", compute_missing=True)
        assert value == random_baseline.compute_random_baseline("CartPole-v1")["mean"]
        cache = read_json(tmp_path / "cache/slm_lab/random_baseline.json")
        assert cache["CartPole-v1"]["mean"] == value
        assert read_json(shipped) == {}
        random_baseline.clear_cache()
        assert random_baseline.get_random_baseline("CartPole-v1") == value  # read back from the cache
        assert random_baseline.get_random_baseline("NoSuchEnv-v0", compute_missing=True) is None
    finally:
        random_baseline.clear_cache()


# ---------------------------------------------------------------------------------------------------------------
# IQM and confidence interval of a trial (B3), --log-extra, short runs (D36), experiment analysis


def test_trial_iqm_of_session_scores_by_hand():
    sessions = [session_metrics([1.0, 2.0], [10.0, 20.0], v) for v in (10.0, 200.0, 30.0, 20.0, np.nan)]
    scalar = analysis.calc_trial_metrics(sessions)["scalar"]
    # the NaN session is left out; of 10, 20, 30, 200 the lowest and highest quarter go: IQM = (20 + 30) / 2
    assert scalar["total_reward_ma_iqm"] == 25.0
    assert scalar["total_reward_ma"] == pytest.approx(65.0)  # the plain mean, kept as in the reference
    low, high = scalar["total_reward_ma_iqm_ci_low"], scalar["total_reward_ma_iqm_ci_high"]
    assert 10.0 <= low < 25.0 < high <= 200.0
    assert analysis.calc_trial_metrics(sessions)["scalar"] == scalar  # seeded: identical when recomputed
    line = analysis.trial_stats_line(scalar, 5)
    assert line.startswith("trial_iqm: total_reward_ma IQM 25.00, 95% CI [") and line.endswith(
        "over 5 sessions (stratified bootstrap)"
    )


def test_short_trial_gives_nan_metrics_and_warnings_not_a_crash(
    tmp_path, baseline, headless, logs, check_graph
):
    """D36: sessions with too few checkpoints give NaN session and trial metrics (IQM included), a warning per
    session, and still the files and graphs, with nothing raised."""
    spec = make_spec(tmp_path)
    metrics_list = [
        analysis.analyze_session(make_spec(tmp_path, session=s), tiny_df().iloc[:2], "train")
        for s in range(2)
    ]
    trial = analysis.analyze_trial(spec, metrics_list)
    scalar = trial["scalar"]
    assert all(math.isnan(scalar[k]) for k in analysis.SESSION_SCALAR_KEYS + analysis.TRIAL_STATS_KEYS)
    assert scalar["frame"] == 200.0
    assert sum("metrics are NaN" in m for m in logs) == 2
    assert analysis.trial_metrics_line(scalar).startswith(
        "trial_metrics: frame:2.00e+02 | total_reward_ma:nan |"
    )
    assert "IQM nan, 95% CI [nan, nan]" in analysis.trial_stats_line(scalar, 2)
    for graph in [*tmp_path.glob("graph/*.png"), *tmp_path.glob("graph/*.html")]:
        check_graph(graph)


def test_log_extra_graphs_and_session_line(tmp_path, baseline, headless, monkeypatch, check_graph):
    monkeypatch.setenv("LOG_EXTRA", "true")
    assert analysis.log_extra_enabled()
    metrics_list = [
        analysis.analyze_session(make_spec(tmp_path, session=s), tiny_df(), "train") for s in range(2)
    ]
    analysis.analyze_trial(make_spec(tmp_path), metrics_list)
    graphs = {p.name for p in tmp_path.glob("graph/*")}
    for prefix in ("demo_t0_s0_session_graph_train", "demo_t0_s1_session_graph_train", "demo_t0_trial_graph"):
        for stem in ("strengths_vs_frames", "sample_efficiencies_ma_vs_frames", "training_efficiencies_vs_opt_steps",
                     "stabilities_ma_vs_frames"):  # fmt: skip
            assert f"{prefix}_{stem}.png" in graphs and f"{prefix}_{stem}.html" in graphs
    assert {
        "demo_t0_trial_graph_consistencies_vs_frames.png",
        "demo_t0_trial_graph_consistencies_ma_vs_frames.html",
    } <= graphs
    assert not any("consistencies" in g for g in graphs if "_s0_" in g)  # consistency is a trial metric
    for graph in [*tmp_path.glob("graph/*.png"), *tmp_path.glob("graph/*.html")]:
        check_graph(graph)
    line = analysis.session_metrics_line(1, metrics_list[1]["scalar"])
    assert line == (
        "Session 1 metrics: total_reward_ma:20.00 | strength:15 | max_strength:25 | final_strength:15 | "
        f"sample_efficiency:{(0.025 + 25 / 300 + 0.0375) / 45:.4g} | training_efficiency:{3.25 / 45:.4g} | "
        "stability:0.6667"
    )
    monkeypatch.setenv("LOG_EXTRA", "false")
    assert not analysis.log_extra_enabled()


def trial_data_dict() -> dict:
    scalars = [
        {"frame": 1e3, "total_reward_ma": 50.0, "strength": 30.0, "consistency": 0.5},
        {"frame": 1e3, "total_reward_ma": 90.0, "strength": 70.0, "consistency": 0.9},
        {"frame": 1e3, "total_reward_ma": NAN, "strength": NAN, "consistency": NAN},
    ]
    configs = [
        {"agent.algorithm.gamma": 0.99, "agent.net.hid_layers": [64]},
        {"agent.algorithm.gamma": 0.95, "agent.net.hid_layers": [32, 32]},
        {"agent.algorithm.gamma": 0.9, "agent.net.hid_layers": [64]},
    ]
    return {str(t): {**configs[t], **scalars[t], "total_reward_ma_iqm": 1.0} for t in range(3)}


def test_experiment_df_columns_and_order():
    df = analysis.calc_experiment_df(trial_data_dict())
    assert list(df.columns) == [
        "trial",
        "agent.algorithm.gamma",
        "agent.net.hid_layers",
        *analysis.METRICS_COLS,
    ]
    assert list(df["trial"]) == [1, 0, 2]  # by strength, descending, NaN last
    assert df.loc[0, "agent.net.hid_layers"] == [32, 32]
    assert math.isnan(df.loc[0, "max_strength"])  # a missing metric is NaN


def test_analyze_experiment_writes_df_and_graphs(tmp_path, baseline, headless, check_graph):
    spec = make_spec(tmp_path)
    for t in range(3):  # trial metric files feed the multi-trial graphs
        trial_spec = make_spec(tmp_path, trial=t)
        metrics_list = []
        for s in range(2):
            df = tiny_df()
            df["total_reward"] += 3 * t + s
            metrics_list.append(analysis.analyze_session(make_spec(tmp_path, t, s), df, "train", plot=False))
        analysis.analyze_trial(trial_spec, metrics_list, plot=False)
    df = analysis.analyze_experiment(spec, trial_data_dict())
    assert pd.read_csv(tmp_path / "demo_experiment_df.csv")["trial"].tolist() == [1, 0, 2]
    assert (tmp_path / "info/demo_experiment_df.csv").read_bytes() == (
        tmp_path / "demo_experiment_df.csv"
    ).read_bytes()
    assert read_json(tmp_path / "info/demo_trial_data_dict.json")["1"]["strength"] == 70.0
    assert len(df) == 3
    for stem in (
        "experiment_graph",
        "multi_trial_graph_mean_returns_vs_frames",
        "multi_trial_graph_mean_returns_ma_vs_frames",
    ):
        check_graph(tmp_path / f"demo_{stem}.png")  # copied to the run folder
        check_graph(tmp_path / f"graph/demo_{stem}.png")
    layout = check_graph(tmp_path / "graph/demo_experiment_graph.html")["layout"]
    x_titles = [layout[axis]["title"]["text"] for axis in ("xaxis", "xaxis2")]
    assert x_titles == ["agent.algorithm.gamma", "agent.net.hid_layers"]
    assert layout["xaxis2"]["ticktext"] == ["[32, 32]", "[64]"]
    multi = check_graph(tmp_path / "graph/demo_multi_trial_graph_mean_returns_vs_frames.html")
    assert [t["name"] for t in multi["data"] if t["line"]["width"]] == ["t0", "t1", "t2"]  # lines, not bands


def test_log_extra_also_draws_the_multi_trial_metric_graphs(tmp_path, baseline, headless, check_graph):
    spec = make_spec(tmp_path)
    for t in range(3):
        metrics_list = []
        for s in range(2):
            df = tiny_df()
            df["total_reward"] += 3 * t + s
            metrics_list.append(analysis.analyze_session(make_spec(tmp_path, t, s), df, "train", plot=False))
        analysis.analyze_trial(make_spec(tmp_path, trial=t), metrics_list, plot=False)
    analysis.analyze_experiment(spec, trial_data_dict(), log_extra=False)
    assert not list((tmp_path / "graph").glob("*multi_trial_graph_strengths*"))
    analysis.analyze_experiment(spec, trial_data_dict(), log_extra=True)
    for stem in (
        "strengths_vs_frames",
        "strengths_ma_vs_frames",
        "sample_efficiencies_vs_frames",
        "training_efficiencies_vs_opt_steps",
        "stabilities_ma_vs_frames",
    ):
        traces = check_graph(tmp_path / f"graph/demo_multi_trial_graph_{stem}.html")["data"]
        assert [t["name"] for t in traces if t["line"]["width"]] == ["t0", "t1", "t2"]  # lines, not bands
