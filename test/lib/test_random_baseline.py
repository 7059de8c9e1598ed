"""Random baselines (D22): the shipped file is read-only; a missing env is computed once and cached in the user
cache, or under the data folder when the cache folder cannot be written."""

from pathlib import Path

import pytest

from slm_lab.lib import random_baseline
from slm_lab.lib.io_util import read_json, write_json


@pytest.fixture
def isolated(tmp_path, monkeypatch, data_dir):
    """An empty shipped file, a fresh cache location and data folder, and a fake 100-episode computation."""
    shipped = tmp_path / "shipped.json"
    write_json(shipped, {"Known-v0": {"mean": 1.5, "std": 0.0}})
    monkeypatch.setattr(random_baseline, "SHIPPED_PATH", shipped)
    calls: list[str] = []

    def fake_compute(env_id, episodes=100, seed=0, max_seconds=None):
        calls.append(env_id)
        if env_id == "Broken-v0":
            raise RuntimeError("cannot make env")
        if env_id == "NaN-v0":
            return {"mean": float("nan"), "std": float("nan")}
        return {"mean": 7.25, "std": 1.0}

    monkeypatch.setattr(random_baseline, "compute_random_baseline", fake_compute)
    random_baseline.clear_cache()
    yield shipped, calls
    random_baseline.clear_cache()


def test_missing_env_is_cached_in_user_cache_and_shipped_file_untouched(isolated, tmp_path, monkeypatch):
    shipped, calls = isolated
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = shipped.read_bytes()
    assert random_baseline.get_random_baseline("Known-v0", compute_missing=True) == 1.5
    assert random_baseline.get_random_baseline("New-v0") is None  # computing is opt-in
    assert random_baseline.get_random_baseline("New-v0", compute_missing=True) == 7.25
    assert random_baseline.get_random_baseline("New-v0", compute_missing=True) == 7.25
    assert calls == ["New-v0"]  # computed once
    assert read_json(tmp_path / "cache/slm_lab/random_baseline.json") == {
        "New-v0": {"mean": 7.25, "std": 1.0}
    }
    assert shipped.read_bytes() == before
    random_baseline.clear_cache()
    assert random_baseline.get_random_baseline("New-v0") == 7.25  # read back from the cache in a new process
    assert calls == ["New-v0"]


def test_unwritable_cache_falls_back_to_data_folder(isolated, tmp_path, monkeypatch, data_dir):
    _, calls = isolated
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its slm_lab/ subfolder cannot be created
    assert random_baseline.user_cache_path() == data_dir / "_random_baseline.json"
    assert random_baseline.get_random_baseline("New-v0", compute_missing=True) == 7.25
    assert read_json(data_dir / "_random_baseline.json")["New-v0"]["mean"] == 7.25
    assert calls == ["New-v0"]


def test_failed_computation_is_not_retried(isolated, tmp_path, monkeypatch):
    _, calls = isolated
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert random_baseline.get_random_baseline("Broken-v0", compute_missing=True) is None
    assert random_baseline.get_random_baseline("Broken-v0", compute_missing=True) is None
    assert calls == ["Broken-v0"]
    assert not (tmp_path / "cache/slm_lab/random_baseline.json").exists()


def test_a_custom_entry_point_env_gets_a_real_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry points resolve the way the lab makes envs: the random walk along the test corridor pays 1 at its end
    and −0.01 per step, so the mean return is below 1 and not the 0 of a failed computation."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "fixtures"))
    result = random_baseline.compute_random_baseline("custom_env:Corridor", episodes=5)
    assert 0.0 < result["mean"] < 1.0


def test_a_non_finite_baseline_is_never_cached_nor_read(isolated, tmp_path, monkeypatch):
    """A NaN baseline (an env whose rewards are NaN) would poison every later run of the fixed env: it is not
    written, and one already in a cache file counts as unknown."""
    _, calls = isolated
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert random_baseline.get_random_baseline("NaN-v0", compute_missing=True) is None
    assert not (cache / "slm_lab" / "random_baseline.json").exists() and calls == ["NaN-v0"]
    write_json(cache / "slm_lab" / "random_baseline.json", {"Old-v0": {"mean": float("nan"), "std": 0.0}})
    random_baseline.clear_cache()
    assert random_baseline.get_random_baseline("Old-v0") is None


def test_the_reference_s_figures_serve_envs_the_lab_has_not_measured(isolated, tmp_path, monkeypatch):
    """A first run on a common Atari or MuJoCo env reads its baseline instead of spending 100 episodes on it; the
    lab's own measurements come first."""
    _, calls = isolated
    monkeypatch.setattr(
        random_baseline, "REFERENCE_PATH", random_baseline.SPEC_DIR / "random_baseline_reference.json"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reference = read_json(random_baseline.REFERENCE_PATH)
    assert (
        "source" not in reference and "SLM-Lab" in reference["_source"]
    )  # the figures name where they come from
    for env_id in ("ALE/Qbert-v5", "ALE/MsPacman-v5", "Humanoid-v5", "LunarLander-v3", "Taxi-v3"):
        expected = reference[env_id]["mean"]
        assert random_baseline.get_random_baseline(env_id, compute_missing=True) == expected
    assert calls == []
    assert random_baseline.get_random_baseline("_source") is None  # the note is not a baseline
    write_json(random_baseline.SHIPPED_PATH, {"ALE/Qbert-v5": {"mean": 150.0, "std": 1.0}})
    random_baseline.clear_cache()
    assert random_baseline.get_random_baseline("ALE/Qbert-v5") == 150.0


def test_the_shipped_reference_table_covers_every_atari_game_and_mujoco_env() -> None:
    table = read_json(random_baseline.SPEC_DIR / "random_baseline_reference.json")
    atari = [k for k in table if k.startswith("ALE/")]
    assert len(atari) >= 100 and "ALE/Pong-v5" in atari
    assert {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"} <= set(table)
    assert all(set(v) == {"mean", "std"} for k, v in table.items() if not k.startswith("_"))
