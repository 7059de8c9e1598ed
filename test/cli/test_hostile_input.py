"""Hostile and broken input through the CLI, in subprocesses: unsafe names, files that would grow without bound while
loading, duplicate keys, unreadable files and unusable data dirs each end in one clear line with nothing written;
two runs of one spec started in the same second each get a complete folder of their own."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slm_lab.errors import LabError
from slm_lab.spec.loader import MAX_NAME_LENGTH, claim_predir, get_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAME = "ppo_cartpole_tiny"
SPEC = str(FIXTURES / f"{NAME}.json")


def slm_lab(
    args: list[str],
    cwd: Path,
    data_dir: Path | None = None,
    fixtures_on_path: bool = False,
    timeout: int = 120,
) -> subprocess.CompletedProcess[str]:
    """``slm-lab ARGS`` in a subprocess; ``fixtures_on_path`` makes the test envs (``custom_env:...``) importable."""
    env = {**os.environ, "SLM_DATA_DIR": str(data_dir or cwd / "data")}
    if fixtures_on_path:
        env["PYTHONPATH"] = str(FIXTURES)
    env.pop("PY_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def assert_one_clear_line(out: subprocess.CompletedProcess[str], message: str, data: Path) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not data.exists() or not any(data.iterdir()), list(data.iterdir())


def _alias_bomb(path: Path) -> None:
    """Nine levels of nine aliases each: 9**9 strings once expanded, from a file of a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path.write_text("\n".join([*lines, f"{NAME}: {{agent: {{}}, env: {{}}, meta: {{}}}}"]) + "\n")


def _merge_bomb(path: Path) -> None:
    """Merge keys that double at every level, which PyYAML expands while parsing, before any alias is copied."""
    lines = ["m0: &m0 {k0: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, 40)]
    path.write_text("\n".join(lines) + "\n")


HOSTILE_FILES = {
    "alias_bomb.yaml": (_alias_bomb, "values once its YAML aliases are expanded"),
    "merge_bomb.yaml": (_merge_bomb, "a YAML merge (<<) expanding to more than"),
    "duplicate.json": (
        lambda p: p.write_text(json.dumps({NAME: {}})[:-1] + ', "' + NAME + '": {}}'),
        f"key '{NAME}' is given twice",
    ),
    "duplicate.yaml": (
        lambda p: p.write_text(f"{NAME}:\n  agent: {{}}\n  env: {{}}\n  agent: {{}}\n"),
        "key 'agent' is given twice in one mapping (line 4)",
    ),
    "latin1.json": (lambda p: p.write_bytes('{"café": 1}'.encode("latin-1")), "not UTF-8 text"),
    "huge.json": (lambda p: p.write_text('{"x": "' + "x" * (5 * 2**20) + '"}'), "holds at most"),
    "deep.json": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
}


@pytest.mark.parametrize("filename", list(HOSTILE_FILES))
def test_a_hostile_spec_file_fails_fast_with_one_line(tmp_path: Path, filename: str) -> None:
    write, message = HOSTILE_FILES[filename]
    path = tmp_path / filename
    write(path)
    out = slm_lab(["run", str(path), NAME, "train"], tmp_path)
    assert_one_clear_line(out, message, tmp_path / "data")


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "/tmp/absolute",
        "a/b",
        "x\nINFO forged log line",
        ".hidden",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_an_unsafe_spec_name_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    out = slm_lab(["run", SPEC, name, "train"], tmp_path)
    message = "characters; at most" if len(name) > MAX_NAME_LENGTH else "not a safe file name"
    assert_one_clear_line(out, message, tmp_path / "data")
    assert not list(tmp_path.parent.glob("escape*")) and not Path("/tmp/absolute").exists()


def test_an_env_name_given_with_set_cannot_escape_the_data_dir(tmp_path: Path) -> None:
    """``-s env=...`` adds the env's short name to the run name, so it is checked as well."""
    spec = tmp_path / "env_var.json"
    spec.write_text(FIXTURES.joinpath(f"{NAME}.json").read_text().replace('"CartPole-v1"', '"${env}"'))
    out = slm_lab(
        ["run", str(spec), NAME, "train", "-s", "env=ALE/bad name-v5", "-s", "max_frame=64"], tmp_path
    )
    assert_one_clear_line(out, "run name (spec name and -s env)", tmp_path / "data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_spec_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "locked.json"
    path.write_text("{}")
    path.chmod(0)
    out = slm_lab(["run", str(path), NAME, "train"], tmp_path)
    assert_one_clear_line(out, "cannot read the spec file", tmp_path / "data")


def test_an_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = slm_lab(["run", SPEC, NAME, "dev", "-s", "max_frame=64"], tmp_path, data_dir=blocker / "data")
    assert_one_clear_line(out, "cannot create the run folder", blocker / "data")


def test_a_second_claim_of_one_run_folder_waits_for_the_next_second(data_dir: Path) -> None:
    first = get_spec(SPEC, NAME, ["max_frame=64"])
    second = get_spec(SPEC, NAME, ["max_frame=64"])
    second["meta"].update(experiment_ts=first["meta"]["experiment_ts"], predir=first["meta"]["predir"])
    a, b = claim_predir(first), claim_predir(second)
    assert a != b and Path(a).is_dir() and Path(b).is_dir()
    assert second["meta"]["experiment_ts"] > first["meta"]["experiment_ts"]
    assert b == f"{data_dir}/{NAME}_{second['meta']['experiment_ts']}"


def test_a_file_where_the_run_folder_goes_is_an_error_not_a_wait(data_dir: Path) -> None:
    spec = get_spec(SPEC, NAME, ["max_frame=64"])
    data_dir.mkdir()
    Path(spec["meta"]["predir"]).write_text("")
    with pytest.raises(LabError, match="a file is in the way"):
        claim_predir(spec)


def test_two_runs_started_in_the_same_second_get_complete_folders_of_their_own(tmp_path: Path) -> None:
    env = {**os.environ, "SLM_DATA_DIR": str(tmp_path / "data"), "SLM_CPUS": "1"}
    env.pop("PY_ENV", None)
    args = [sys.executable, "-m", "slm_lab.cli.main", "run", SPEC, NAME, "dev", "-s", "max_frame=256"]
    procs = [
        subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    folders = sorted((tmp_path / "data").iterdir())
    assert len(folders) == 2, folders
    for folder, other in zip(folders, reversed(folders), strict=True):
        assert re.fullmatch(rf"{NAME}_\d{{4}}_\d{{2}}_\d{{2}}_\d{{6}}", folder.name)
        spec = json.loads((folder / f"{NAME}_spec.json").read_text())
        assert spec["meta"]["predir"] == str(folder)
        df = (folder / "info" / f"{NAME}_t0_s0_session_df_train.csv").read_text().splitlines()
        assert len(df) > 1
        log = (folder / "log" / f"{NAME}.log").read_text()
        assert str(folder) in log and str(other) not in log


def test_an_entry_point_that_is_not_an_env_class_is_never_called(tmp_path: Path) -> None:
    """``os:system`` is importable and callable; with a ``command`` env key, calling it would run the command."""
    marker = tmp_path / "pwned"
    spec = json.loads(FIXTURES.joinpath(f"{NAME}.json").read_text())
    spec[NAME]["env"].update(name="os:system", command=f"touch {marker}")
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(spec))
    out = slm_lab(["run", str(path), NAME, "train", "-s", "max_frame=64"], tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "'system' is a builtin_function_or_method, not a gymnasium.Env subclass" in out.stderr
    assert not marker.exists()


def test_an_env_that_raises_mid_run_ends_in_one_line_with_the_state_saved_and_train_at_continues(
    tmp_path: Path,
) -> None:
    """The traceback goes to the session log; the state is saved as on SIGTERM; ``train@`` continues the run from
    where it stopped to its end (the env's own step count is part of the saved state, so it does not raise again)."""
    spec = json.loads(FIXTURES.joinpath(f"{NAME}.json").read_text())
    spec[NAME]["env"] = {
        "name": "custom_env:Flaky",
        "num_envs": 1,
        "max_frame": 1000,
        "length": 4,
        "explode_at": 300,
    }
    spec[NAME]["meta"]["max_session"] = 1
    path = tmp_path / "flaky.json"
    path.write_text(json.dumps(spec))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return slm_lab(["run", *args], tmp_path, fixtures_on_path=True, timeout=300)

    out = run(str(path), NAME, "train")
    assert out.returncode != 0 and "Traceback" not in out.stdout + out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    predir = next((tmp_path / "data").iterdir())
    assert re.search(
        r"session 0 failed at frame \d+: RuntimeError: Flaky env exploded at its step 300", last
    ), last
    first = int(re.search(r"failed at frame (\d+)", last).group(1))
    assert f"continue with: slm-lab run train@{predir}" in last, last
    assert "Traceback" in (predir / "log" / f"{NAME}_t0_s0.log").read_text()
    assert (predir / "model" / f"{NAME}_t0_s0_state.pt").is_file()
    again = run(str(path), NAME, f"train@{predir}")
    assert again.returncode == 0, again.stderr[-3000:]
    frames = [int(float(row.split(",")[4])) for row in (predir / "info" / f"{NAME}_t0_s0_session_df_train.csv")
              .read_text().splitlines()[1:]]  # fmt: skip
    assert frames[-1] == 1000 and any(first < f < 1000 for f in frames)


def _flaky_run(
    tmp_path: Path, max_frame: int, **env_kwargs: object
) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = json.loads(FIXTURES.joinpath(f"{NAME}.json").read_text())
    spec[NAME]["env"] = {
        "name": "custom_env:Flaky",
        "num_envs": 2,
        "max_frame": max_frame,
        "length": 4,
        **env_kwargs,
    }
    spec[NAME]["meta"]["max_session"] = 1
    path = tmp_path / "flaky.json"
    path.write_text(json.dumps(spec))
    out = slm_lab(["run", str(path), NAME, "train"], tmp_path, fixtures_on_path=True, timeout=300)
    return out, next((tmp_path / "data").iterdir())


def test_a_session_that_only_saw_nan_rewards_is_an_error_not_a_result(tmp_path: Path) -> None:
    out, predir = _flaky_run(tmp_path, 768, nan_rewards=True)
    assert out.returncode != 0 and "Traceback" not in out.stdout + out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert re.search(r"session 0: (\d+) of \1 updates were skipped for a non-finite loss", last), last
    assert re.search(r"non-finite values from the env: [1-9]\d* rewards, 0 observations", last), last
    assert (predir / "info" / f"{NAME}_t0_s0_session_df_train.csv").is_file()  # the files are kept
