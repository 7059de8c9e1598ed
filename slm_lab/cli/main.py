"""The ``slm-lab`` command. Only typer is imported at module level, so ``--help`` answers without torch."""

import os
import sys
from typing import Annotated

import typer

__all__ = ["app", "main"]

MODES = ("dev", "train")
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
    mode: Annotated[str, typer.Argument(help="dev (1 session, checks on) or train")] = "dev",
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
            help="CPU: torch threads per session from the core count; GPU: TF32 and cudnn.benchmark",
        ),
    ] = True,
    cuda_offset: Annotated[
        int, typer.Option("--cuda-offset", envvar="CUDA_OFFSET", help="Added to the GPU index")
    ] = 0,
) -> None:
    """Run a spec: `slm-lab run [SPEC_FILE] [SPEC_NAME] [MODE]` (default: the PPO CartPole demo in dev mode)."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    lab_mode = mode.split("@", 1)[0]
    if lab_mode not in MODES:
        _fail(f"unknown mode {mode!r}; this version runs: {', '.join(MODES)}")
    _export_flags(LOG_LEVEL=level, OPTIMIZE_PERF=optimize_perf, CUDA_OFFSET=cuda_offset, lab_mode=lab_mode)

    from slm_lab.errors import LabError
    from slm_lab.lib.logger import setup_logging

    setup_logging(level)
    try:
        from slm_lab.spec.loader import get_spec, override_spec  # light: validates before torch is imported

        spec = override_spec(get_spec(spec_file, spec_name, sets or []), lab_mode)
        from slm_lab.experiment.run import run_trial

        run_trial(spec, spec_file, spec_name, lab_mode)
    except LabError as e:
        _fail(str(e))


def main() -> None:
    app(prog_name="slm-lab")


if __name__ == "__main__":
    sys.exit(main())
