"""bin/check-specs: one line per spec of a folder (OK, or the reason it fails), and exit status 1 on any failure."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "fixtures" / "ppo_cartpole_tiny.json"


def check_specs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "check-specs"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_specs_reports_each_spec_and_fails_on_any(tmp_path: Path) -> None:
    tiny = json.loads(TINY.read_text())["ppo_cartpole_tiny"]
    good = {**tiny, "env": {**tiny["env"], "max_frame": 1000}}
    distributed = {**good, "meta": {**good["meta"], "distributed": "synced"}}
    broken = {**good, "agent": {**good["agent"], "algorithm": {"name": "NoSuchAlgo", "gamma": 0.99}}}
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mix.json").write_text(
        json.dumps({"good": good, "dist": distributed, "broken": broken})
    )
    (tmp_path / "specs" / "template.json").write_text(json.dumps({"tpl": tiny}))  # ${max_frame} is unfilled
    out = check_specs(str(tmp_path / "specs"), "--run")
    lines = {
        line.split(":")[1].split()[0]: line
        for line in out.stdout.splitlines()
        if line.startswith(("OK", "FAIL"))
    }
    assert out.returncode == 1, out.stdout + out.stderr
    assert lines["good"].startswith("OK")
    assert lines["dist"].startswith("FAIL") and "distributed" in lines["dist"]
    assert lines["broken"].startswith("FAIL") and "NoSuchAlgo" in lines["broken"]
    assert lines["tpl"].startswith("FAIL") and "-s max_frame=..." in lines["tpl"]
    assert "1 of 4 specs train here; 3 fail" in out.stdout
    ok = check_specs(str(tmp_path / "specs" / "template.json"), "-s", "max_frame=500")
    assert ok.returncode == 0 and "1 of 1 specs load here" in ok.stdout
