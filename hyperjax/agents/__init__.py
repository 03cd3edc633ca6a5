"""PPO and A2C agents: static settings as frozen dataclasses, tunable ones as traced leaves."""

from hyperjax.agents.a2c import A2C, A2CHParams
from hyperjax.agents.base import ActorCriticAgent, MemberState, UpdateMetrics
from hyperjax.agents.ppo import PPO, PPOHParams

AGENTS = {"ppo": PPO, "a2c": A2C}


def make_agent(name: str, **settings) -> ActorCriticAgent:
    """``make_agent("ppo", env="CartPole-v1", num_envs=16)``; unknown names raise ValueError."""
    if name not in AGENTS:
        raise ValueError(f"agent {name!r} is unknown; allowed: {', '.join(AGENTS)}")
    return AGENTS[name](**settings)


__all__ = ["A2C", "A2CHParams", "PPO", "PPOHParams", "ActorCriticAgent", "MemberState", "UpdateMetrics", "AGENTS", "make_agent"]
