"""Backends for agent frameworks, each an optional extra imported from its own module.

``pip install "convlog[openai-agents]"`` and ``from projections.frameworks.openai_agents
import ...``: a module here imports its framework, so nothing imports this package's
modules unless it asked for that framework. Each backend stores the framework's records
as events on the same log, so an agent run is audited, replayable and subscribable with
the rest (see the README's "Agent frameworks").
"""

__all__: list[str] = []
