"""The ``slm-lab`` command. Only typer is imported at module level, so ``--help`` answers without torch."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app", "main"]

MODES = ("dev", "train", "search", "enjoy", "eval")
TARGET_MODES = ("train", "search", "enjoy", "eval")  # mode@target; enjoy and eval need one
app = typer.Typer(
    help="SLM Lab: modular deep reinforcement learning framework in PyTorch.",
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """SLM Lab: modular deep reinforcement learning framework in PyTorch."""


def _export_flags(**flags: object) -> None:
    """Flag values go to the environment (lowercase true/false) so spawned session processes read them."""
    for key, value in flags.items():
        os.environ[key] = str(value).lower() if isinstance(value, bool) else str(value)


def _fail(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def run(
    spec_file: Annotated[
        str, typer.Argument(help="Spec file, JSON or YAML")
    ] = "slm_lab/spec/benchmark/ppo/ppo_cartpole.json",
    spec_name: Annotated[str, typer.Argument(help="Top-level key of the spec in the file")] = "ppo_cartpole",
    mode: Annotated[
        str,
        typer.Argument(
            help="dev (1 session, checks on), train, search (Ray Tune); train@latest / train@FOLDER continue "
            "an interrupted run, search@latest / search@FOLDER an interrupted search; enjoy@SPEC (alias "
            "eval@SPEC) replays the best session of a trial from its saved {name}_t{t}_spec.json"
        ),
    ] = "dev",
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="KEY=VALUE substituted for ${KEY} in the spec; repeatable"),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level", envvar="LOG_LEVEL", help="Console log level: DEBUG, INFO, WARNING or ERROR"
        ),
    ] = "INFO",
    optimize_perf: Annotated[
        bool,
        typer.Option(
            "--optimize-perf/--no-optimize-perf",
            envvar="OPTIMIZE_PERF",
            help="CPU: torch threads from this run's share of the cores among the lab runs on the machine, "
            "resized as runs start and end; GPU: also TF32 and cudnn.benchmark",
        ),
    ] = True,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            envvar="SLM_THREADS",
            min=1,
            help="Fix each session's torch threads at N instead of sharing the cores out",
        ),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            envvar="PROFILE",
            help="Time the loop's phases and write torch.profiler traces, profiler_summary.json and "
            "profiling_dashboard.html to {predir}/profiler/; a fresh train runs as dev (one session), "
            "train@FOLDER continues as saved",
        ),
    ] = False,
    cuda_offset: Annotated[
        int, typer.Option("--cuda-offset", envvar="CUDA_OFFSET", help="Added to the GPU index")
    ] = 0,
    log_extra: Annotated[
        bool,
        typer.Option(
            "--log-extra",
            envvar="LOG_EXTRA",
            help="Also log and plot strength, efficiency, stability and consistency",
        ),
    ] = False,
    render: Annotated[
        bool,
        typer.Option(
            "--render",
            envvar="RENDER",
            help="Show the env in a window (vector envs as a grid); warns and goes on if there is no display",
        ),
    ] = False,
    keep: Annotated[
        int,
        typer.Option(
            "--keep",
            envvar="KEEP_TRIALS",
            help="After a search, keep model files only for the top N trials by total_reward_ma; -1 keeps all",
        ),
    ] = 3,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="RAY_ADDRESS",
            help="Search on the existing Ray cluster at this address instead of starting a local one",
        ),
    ] = None,
    stop_ray: Annotated[
        bool,
        typer.Option(
            "--stop-ray",
            help="Stop the Ray processes of clusters the lab started (never one it only attached to), then exit",
        ),
    ] = False,
) -> None:
    """Run a spec: `slm-lab run [SPEC_FILE] [SPEC_NAME] [MODE]` (default: the PPO CartPole demo in dev mode)."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    if stop_ray:
        _stop_ray()
        return
    if spec_file.startswith(("enjoy@", "eval@", "train@")) and not Path(spec_file).exists():
        # `slm-lab run enjoy@SPEC` / `train@FOLDER`: the spec comes from the run's folder, not from a spec file
        mode = spec_file
    lab_mode, _, target = mode.partition("@")
    if (
        lab_mode not in MODES
        or (target and lab_mode not in TARGET_MODES)
        or (mode.endswith("@") and not target)
        or (lab_mode in ("enjoy", "eval") and not target)
    ):
        _fail(
            f"unknown mode {mode!r}; valid: dev, train, search, train@latest, train@FOLDER, search@latest, "
            "search@FOLDER, enjoy@SPEC_FILE, eval@SPEC_FILE"
        )
    if profile and lab_mode == "search":
        _fail("--profile times the sessions of one trial: use it with dev or train, not search")
    if profile and lab_mode == "train" and not target:
        # a profile is of one session with dev's checks on; train@FOLDER keeps its target and continues the trial
        # as saved, so that profiling a resumed run loses none of its sessions
        lab_mode = "dev"
    if threads is not None:
        _export_flags(SLM_THREADS=threads)
    _export_flags(
        LOG_LEVEL=level,
        PROFILE=profile,
        OPTIMIZE_PERF=optimize_perf,
        CUDA_OFFSET=cuda_offset,
        LOG_EXTRA=log_extra,
        KEEP_TRIALS=keep,
        RENDER=render,
        lab_mode=lab_mode,
    )

    from slm_lab.errors import Interrupted, LabError
    from slm_lab.lib.logger import setup_logging

    setup_logging(level)
    try:
        from slm_lab.spec.loader import get_spec, override_spec, run_name  # light: no torch yet

        if target:  # mode@target: the spec is the one saved in the run's folder
            _run_target(lab_mode, target, run_name(spec_name, sets), ray_address, keep)
            return
        spec = override_spec(get_spec(spec_file, spec_name, sets or []), lab_mode)
        if lab_mode == "search":
            from slm_lab.experiment.run import run_experiment

            run_experiment(spec, spec_file, spec_name, ray_address, keep)
        else:
            from slm_lab.experiment.run import run_trial

            run_trial(spec, spec_file, spec_name, lab_mode)
    except LabError as e:
        _fail(str(e))
    except Interrupted as e:
        typer.echo(f"Interrupted: {e}", err=True)
        raise typer.Exit(128 + e.signum) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted", err=True)
        raise typer.Exit(130) from None


def _run_target(lab_mode: str, target: str, name: str, ray_address: str | None, keep: int) -> None:
    """``train@``, ``search@``, ``enjoy@`` / ``eval@``."""
    if lab_mode == "search":
        from slm_lab.experiment.run import restore_experiment

        restore_experiment(target, name, ray_address, keep)
    elif lab_mode == "train":
        from slm_lab.experiment.run import resume_trial

        resume_trial(target, name)
    else:
        from slm_lab.experiment.run import run_enjoy

        run_enjoy(target, lab_mode)


def _stop_ray() -> None:
    from slm_lab.errors import LabError
    from slm_lab.experiment.ray_cluster import stop_lab_ray

    try:
        pids = stop_lab_ray()
    except LabError as e:
        _fail(str(e))
        return
    if pids:
        typer.echo(
            f"Stopped {len(pids)} process(es) of Ray clusters the lab started: {' '.join(map(str, pids))}"
        )
    else:
        typer.echo("No Ray process started by the lab is running")


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


@app.command()
def plot(
    folders: Annotated[
        str,
        typer.Option(
            "--folders", "-f", help="Run folders to compare, comma-separated (names under -d, or paths)"
        ),
    ],
    title: Annotated[
        str | None,
        typer.Option("--title", "-t", help="Graph title and file-name prefix (default: the env names)"),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--legends", "--labels", "-l", help="Legend labels, one per folder (default: algorithm names)"
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data-folder", "--data", "-d", help="Folder holding the runs (default: data, or $SLM_DATA_DIR)"
        ),
    ] = None,
    out: Annotated[
        str, typer.Option("--output", "--out", "-o", help="Folder the graphs are written to")
    ] = "docs/plots",
    legend: Annotated[bool, typer.Option("--legend/--no-legend", help="Show the legend")] = True,
    with_stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Also draw performance profiles and the probability of improvement (IQM and bootstrap CIs)",
        ),
    ] = False,
) -> None:
    """Overlay several runs' MA curves: `slm-lab plot -f RUN1,RUN2 [-t TITLE] [-l L1,L2] [--stats]`."""

    from slm_lab.errors import LabError
    from slm_lab.lib.logger import setup_logging
    from slm_lab.lib.paths import data_dir

    setup_logging()
    try:
        from slm_lab.cli.plot import plot_runs

        written, report = plot_runs(
            _split_list(folders) or [],
            Path(data) if data else data_dir(),
            Path(out),
            title=title,
            labels=_split_list(labels),
            legend=legend,
            with_stats=with_stats,
        )
    except LabError as e:
        _fail(str(e))
        return
    for line in report:
        typer.echo(line)
    if not written:
        _fail("no graph was written (see the warnings above)")
    for path in written:
        typer.echo(f"Wrote {path}")


@app.command("plot-list")
def plot_list(
    data: Annotated[
        str | None,
        typer.Option(
            "--data-folder", "--data", "-d", help="Folder holding the runs (default: data, or $SLM_DATA_DIR)"
        ),
    ] = None,
) -> None:
    """List the local run folders; an x in brackets marks those with trial metrics (usable by `slm-lab plot`)."""
    from slm_lab.errors import LabError
    from slm_lab.lib.paths import data_dir

    try:
        from slm_lab.cli.plot import list_runs

        lines = list_runs(Path(data) if data else data_dir())
    except LabError as e:
        _fail(str(e))
        return
    for line in lines:
        typer.echo(line)
    if not lines:
        typer.echo("(no run folders)")


def main() -> None:
    app(prog_name="slm-lab")


if __name__ == "__main__":
    sys.exit(main())
