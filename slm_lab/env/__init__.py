"""The lab's environment: every gymnasium env, single or vector, behind one batched interface.

``make_env(spec)`` builds a ``LabEnv``. Everything it returns has a leading ``num_envs`` axis, so agents and
memories never branch on single vs vector envs.

Autoreset is same-step (→D6): ``LabEnv.step`` returns both the true next state of each copy (``next_state``, the
final observation where an episode ended) and the observation to act on next (``obs``, the reset observation
there). A transition from a final observation to a reset observation is never produced. A single env is presented
as a vector env of one copy that resets itself the same way (``single.py``), so the session never calls ``reset``
after the first one, and single and vector envs share one stepping path.

Per step, in order: the env steps; raw episode returns are accumulated per copy (completed ones go in a deque of
100, which ``total_reward`` reads); then the lab transforms run, batched: ``reward_scale`` (→D9) ->
``normalize_obs`` -> ``clip_obs`` -> ``normalize_reward`` (γ = the algorithm's ``gamma``) -> ``clip_reward``. With
none configured, the step does no extra work.

Vector envs use ``sync`` vectorisation for classic_control and box2d, otherwise ``sync`` below 8 copies and
``async`` from 8; an ``env.vectorization_mode`` key (``sync``/``async``) overrides the choice.

``env.name`` is a registered gymnasium id or a custom env's entry point ``package.module:Class``, imported in the
process that makes the env (``registration.py``). Atari ids get the preprocessing of ``atari.py``, a reward clip to
[−1, 1] on every path (→D21) and full-game returns across life losses. ``--render`` builds the env in
``rgb_array`` mode and shows each step's frame(s) in one window (``render.py``).

The modules, one job each:

- ``factory.py``: ``make_env`` and the building of the gymnasium env(s); the only code that reads spec sections
  other than ``env`` (``meta``'s frequencies, the algorithm's ``gamma``, a ``RecurrentNet``'s ``seq_len``), and
  passes their values to ``LabEnv`` explicitly.
- ``lab_env.py``: ``LabEnv`` and ``Step``: stepping, bookkeeping, transforms, saved state.
- ``actions.py``: the map from the agent's batched action to the env's native action.
- ``single.py``: a single env behind the vector interface.
- ``atari.py``, ``wrappers.py``, ``snapshot.py``, ``registration.py``, ``render.py``, ``clock.py``: Atari paths,
  the transforms, episode snapshots, resolving ``env.name``, ``--render``, the ``Clock``.

Example spec section::

    "env": {"name": "CartPole-v1", "num_envs": 4, "max_frame": 200000, "normalize_obs": true}
"""

from slm_lab.env.clock import Clock
from slm_lab.env.factory import make_env
from slm_lab.env.lab_env import LabEnv, Step

__all__ = ["Clock", "LabEnv", "Step", "make_env"]
