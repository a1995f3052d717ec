"""Transports: the few verbs the engine needs on a host (run a command, open the engine's API)."""

from agent.hosts.base import CommandResult, Transport

__all__ = ["CommandResult", "Transport"]
