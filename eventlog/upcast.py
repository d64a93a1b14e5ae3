"""Upcasting: events stored in an older shape, rewritten into the current one as they are read.

A stored event never changes: it keeps the shape and ``schema_version`` it was written
with. When the shape changes, ``SCHEMA_VERSION`` goes up and a step is registered here for
each event type whose JSON changed, taking version ``n`` to ``n + 1``. The codec chains the
steps on the decoded JSON object, then decodes the result as a current event; event types
with no step for a version only have their version number raised. Current events never
come here, so upcasting costs nothing on the fast path.

Versions so far:

- **0**: the draft shape of message events: the message's text was ``text``, and it had
  no ``parts``. No release wrote it; it stays as the worked example of a step, and the
  tests replay a stream holding such events.
- **1**: the current shape (``content`` plus ``parts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventlog.errors import ValidationError

__all__ = ["UPCASTERS", "UpcastStep", "Upcasters"]

UpcastStep = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes an event's JSON object at version ``n`` and returns it at version ``n + 1``."""


class Upcasters:
    """A registry of upcast steps, by event type and the version each step starts from."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], UpcastStep] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[UpcastStep], UpcastStep]:
        """Register the decorated function as the step from ``from_version`` of ``event_type``.

        >>> upcasters = Upcasters()
        >>> @upcasters.register("thread.created", 1)
        ... def rename_owner(event: dict) -> dict:
        ...     return event  # a real step returns the version-2 shape
        """

        def add(step: UpcastStep) -> UpcastStep:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValidationError(
                    f"an upcaster for {event_type} version {from_version} is already registered"
                )
            self._steps[key] = step
            return step

        return add

    def upcast(self, event: dict[str, Any], *, version: int, target: int) -> dict[str, Any]:
        """Take ``event`` from ``version`` to ``target``, one step at a time."""
        event_type = str(event.get("type"))
        while version < target:
            step = self._steps.get((event_type, version))
            if step is not None:
                event = step(event)
            version += 1
            event = {**event, "schema_version": version}
        return event


UPCASTERS = Upcasters()
"""convlog's own history of event shapes; the codec uses it unless given another."""


def _message_from_v0(event: dict[str, Any]) -> dict[str, Any]:
    message = dict(event.get("message") or {})
    text = message.pop("text", "")
    message.setdefault("content", text)
    message.setdefault("parts", [{"type": "text", "text": text}] if text else [])
    return {**event, "message": message}


UPCASTERS.register("message.created", 0)(_message_from_v0)
UPCASTERS.register("message.updated", 0)(_message_from_v0)
