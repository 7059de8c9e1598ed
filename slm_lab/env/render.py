"""``--render``: show the env while a session runs, one window for single and vector envs alike.

Envs are built with ``render_mode="rgb_array"`` and ``LabEnv`` hands each step's frame(s) to a ``FrameViewer``; a
vector env's copies are tiled into one grid. Rendering is a convenience, so it must never end a run: when there is
no display (or the env cannot draw, e.g. MuJoCo without OpenGL) the viewer logs one warning and switches itself off.
"""

import math
import os
from typing import Any

import numpy as np
from loguru import logger

__all__ = ["FrameViewer", "render_requested", "tile_frames"]


def render_requested() -> bool:
    """The ``--render`` flag, exported by the CLI so that spawned session processes see it too."""
    return os.environ.get("RENDER", "").lower() == "true"


def tile_frames(frames: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Tile ``N`` HxWx3 (or HxW) frames into one image on a near-square grid, padding empty cells with black."""
    frames = [np.asarray(f) for f in frames]
    frames = [np.repeat(f[..., None], 3, axis=-1) if f.ndim == 2 else f for f in frames]
    n = len(frames)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = frames[0].shape
    grid = np.zeros((rows * h, cols * w, c), dtype=frames[0].dtype)
    for i, f in enumerate(frames):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = f
    return grid


class FrameViewer:
    """A pygame window showing the latest frame. Turns itself off with one warning on any display failure."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.enabled = True
        self.frames_shown = 0
        self._screen: Any = None
        self._pygame: Any = None

    def _disable(self, why: str) -> None:
        logger.warning(f"--render: {why}; continuing without rendering")
        self.enabled = False

    def show(self, env: Any) -> None:
        """Render ``env`` (a gymnasium env or vector env in rgb_array mode) and draw the frame."""
        if not self.enabled:
            return
        try:
            frame = env.render()
        except Exception as e:  # any backend failure (no OpenGL, no display) must not stop training
            self._disable(f"the env could not render ({type(e).__name__}: {e})")
            return
        if frame is None:
            self._disable("the env returned no frame")
            return
        if isinstance(frame, list | tuple) or (isinstance(frame, np.ndarray) and frame.ndim == 4):
            frame = tile_frames(frame)
        try:
            self._draw(np.asarray(frame))
        except Exception as e:
            self._disable(f"no display is available ({type(e).__name__}: {e})")

    def _draw(self, frame: np.ndarray) -> None:
        if self._pygame is None:
            import pygame  # installed with gymnasium[box2d]; only needed when rendering

            pygame.display.init()
            self._pygame = pygame
        pygame = self._pygame
        h, w = frame.shape[:2]
        if self._screen is None or self._screen.get_size() != (w, h):
            self._screen = pygame.display.set_mode((w, h))
            pygame.display.set_caption(self.title)
        pygame.event.pump()
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self._screen.blit(surface, (0, 0))
        pygame.display.flip()
        self.frames_shown += 1

    def close(self) -> None:
        if self._pygame is not None:
            self._pygame.display.quit()
            self._pygame = None
            self._screen = None
