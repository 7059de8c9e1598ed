"""The self-imitation algorithms: A2C and PPO with their ``self_imitation`` option on (``SelfImitation``, Oh et al.
2018, https://arxiv.org/abs/1806.05635)."""

from slm_lab.agent.algorithm.actor_critic import ActorCritic
from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.ppo import PPO

__all__ = ["PPOSIL", "SIL"]


@ALGORITHMS.register("SIL")
class SIL(ActorCritic):
    """A2C with self-imitation: each on-policy update is followed by the ``SelfImitation`` updates.

    Spec example::

        {"name": "SIL", "gamma": 0.99, "lam": 0.95, "num_step_returns": null, "val_loss_coef": 0.5,
         "training_frequency": 32, "sil_policy_loss_coef": 1.0, "sil_val_loss_coef": 0.01, "training_iter": 4,
         "training_batch_iter": 4}
    """

    self_imitation = True


@ALGORITHMS.register("PPOSIL")
class PPOSIL(PPO):
    """PPO with self-imitation: each PPO update is followed by the ``SelfImitation`` updates.

    Spec example::

        {"name": "PPOSIL", "gamma": 0.99, "lam": 0.95, "time_horizon": 256, "minibatch_size": 128,
         "training_epoch": 10, "clip_eps_spec": {"name": "no_decay", "start_val": 0.2}, "val_loss_coef": 0.5,
         "sil_policy_loss_coef": 1.0, "sil_val_loss_coef": 0.01, "training_iter": 4, "training_batch_iter": 4}
    """

    self_imitation = True
