"""The prompting agent: the backbone as it is, evaluated with the same agent loop; never trained."""

from __future__ import annotations

from .registry import Method, register

register(Method("prompting", "Prompting agent", rollout=None))
