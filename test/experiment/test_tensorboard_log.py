"""TensorBoard event files: when they are written, and what they hold, read back with TensorBoard's
own event reader."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from slm_lab.experiment.control import Session
from slm_lab.experiment.tensorboard_log import TensorBoardLog, tensorboard_enabled
from slm_lab.spec.loader import get_spec, override_spec, tick

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("mode", "session", "wanted", "expected"),
    [
        ("dev", 0, None, True),
        ("dev", 0, False, False),
        ("dev", 1, None, False),  # dev writes session 0 only
        ("train", 0, None, False),
        ("train", 3, True, True),  # train writes every session when meta asks for it
        ("train", 0, False, False),
        ("test", 0, True, False),
        ("enjoy", 0, True, False),
    ],
)
def test_tensorboard_enabled(mode, session, wanted, expected):
    meta = {"session": session} if wanted is None else {"session": session, "tensorboard": wanted}
    assert tensorboard_enabled({"meta": meta}, mode) is expected


def read_events(log_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    return events


def test_scalars_histograms_actions_and_graph(tmp_path):
    nets = {
        "net": torch.nn.Linear(3, 2),
        "target_net": torch.nn.Linear(3, 2),
        "critic_net": torch.nn.Linear(3, 1),
    }
    tb = TensorBoardLog(str(tmp_path), "demo_t1_s2", 1, 2, nets)
    tb.add_graph(np.zeros((2, 3), dtype=np.float32))
    for step in range(3):
        tb.add_actions(np.array([[0.5, -1.0], [0.25, 1.0]]) * (step + 1))
    tb.write_checkpoint({"total_reward": 12.5, "loss": float("nan"), "frame": 6.0}, 6)
    tb.write_checkpoint({"total_reward": 13.0, "loss": 0.5, "frame": 12.0}, 12)
    tb.close()
    files = list(tmp_path.iterdir())
    assert (
        len(files) == 1
        and files[0].name.startswith("events.out.tfevents.")
        and files[0].name.endswith("_demo_t1_s2")
    )
    events = read_events(tmp_path)
    tags = events.Tags()
    assert [(e.step, e.value) for e in events.Scalars("total_reward/trial1_session2")] == [
        (6, 12.5),
        (12, 13.0),
    ]
    assert [e.step for e in events.Scalars("loss/trial1_session2")] == [12]  # NaN is skipped
    histograms = set(tags["histograms"])
    assert {"net.weight/trial1_session2", "critic_net.bias/trial1_session2"} <= histograms
    assert not any(h.startswith("target_") for h in histograms)
    actions = events.Histograms("action.1/trial1_session2")
    assert len(actions) == 1 and actions[0].step == 6  # the actions are written once, then cleared
    assert actions[0].histogram_value.num == 6 and actions[0].histogram_value.max == 3.0
    assert "action.0/trial1_session2" in histograms and tags["graph"]


def test_dev_session_writes_event_file(data_dir, monkeypatch):
    """A short dev session writes its event file into the run's log/ folder with every df column as a scalar."""
    monkeypatch.setenv("PY_ENV", "test")  # no PNG graphs; TensorBoard follows the mode, not PY_ENV
    spec = override_spec(
        get_spec(str(FIXTURES / "ppo_cartpole_tiny.json"), "ppo_cartpole_tiny", ["max_frame=256"]), "dev"
    )
    spec["meta"]["log_frequency"] = 64
    tick(spec, "trial")
    tick(spec, "session")
    session = Session(copy.deepcopy(spec), "dev")
    session.run()
    log_dir = Path(spec["meta"]["predir"]) / "log"
    assert len(list(log_dir.glob("events.out.tfevents.*_ppo_cartpole_tiny_t0_s0"))) == 1
    events = read_events(log_dir)
    scalars = events.Tags()["scalars"]
    for col in ("total_reward_ma", "loss", "fps", "frame", "opt_step", "grad_norm", "entropy", "clip_eps"):
        assert f"{col}/trial0_session0" in scalars
    assert [e.step for e in events.Scalars("frame/trial0_session0")] == [64, 128, 192, 256]
    assert "action/trial0_session0" in events.Tags()["histograms"] and events.Tags()["graph"]
