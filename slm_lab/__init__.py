"""SLM Lab: modular deep reinforcement learning framework in PyTorch."""

from pathlib import Path

__version__ = "5.3.0"
__all__ = ["ROOT_DIR", "SPEC_DIR", "__version__"]

ROOT_DIR = Path(__file__).resolve().parent
SPEC_DIR = ROOT_DIR / "spec"
