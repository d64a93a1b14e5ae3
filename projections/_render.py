"""How the command line shows messages, events and execution trails, to people and machines.

Text for people (with ANSI colour on a terminal, unless ``NO_COLOR`` is set), and JSON for
machines: each entry with its stored event embedded verbatim and the state after it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Final, TextIO

import msgspec

from eventlog import (
    CodePart,
    FilePart,
    ImagePart,
    Message,
    MessageDeleted,
    ReasoningPart,
    SourcePart,
    TextPart,
    Thread,
    ThreadDeleted,
    ToolCallPart,
    ToolResultPart,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventlog import MessageMetadata, MessagePart
    from projections.audit import AuditEntry, TrailSummary

__all__ = [
    "Colours",
    "describe_metadata",
    "describe_part",
    "entries_json",
    "history_lines",
    "message_lines",
    "preview",
    "replay_lines",
    "summary_line",
]

_PREVIEW: Final = 60
"""Characters of free text shown per line before it is cut with an ellipsis."""


class Colours:
    """ANSI colours, or none: ``Colours.choose("auto", sys.stdout)`` decides as tools do."""

    _CODES: Final = {
        "dim": "2",
        "bold": "1",
        "user": "32",
        "assistant": "36",
        "system": "35",
        "tool": "33",
        "error": "31",
    }

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def choose(cls, when: str, out: TextIO) -> Colours:
        """Colour "always", "never", or "auto": on a terminal unless NO_COLOR is set."""
        if when == "auto":
            return cls(enabled=out.isatty() and not os.environ.get("NO_COLOR"))
        return cls(enabled=when == "always")

    def paint(self, style: str, text: str) -> str:
        """``text`` in ``style`` (a role, or dim, bold, tool, error)."""
        code = self._CODES.get(style)
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and code else text


def preview(text: str) -> str:
    """``text`` on one line, quoted, cut to a readable length."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…")


def describe_part(part: MessagePart) -> str:
    """One line per part: its type, then what matters about it."""
    detail = ""
    match part:
        case TextPart(text=text) | ReasoningPart(text=text):
            detail = preview(text)
        case ToolCallPart(tool_name=name, args=args):
            detail = f"{name} {args!r}"
        case ToolResultPart(tool_name=name, result=result, is_error=is_error):
            detail = f"{name} {result!r}" + (" (error)" if is_error else "")
        case SourcePart(source_id=source_id, url=url):
            detail = f"{source_id} {url or ''}"
        case FilePart(filename=filename, mime_type=mime_type, size_bytes=size):
            detail = f"{filename} ({mime_type}, {size} bytes)"
        case ImagePart(image_id=image_id, url=url):
            detail = f"{image_id} {url or ''}"
        case CodePart(language=language, code=code):
            detail = f"({language or 'plain'}) {preview(code)}"
    return f"{part.type} {detail}".rstrip()


def describe_metadata(metadata: MessageMetadata) -> str | None:
    """Model, tokens, cost and timing on one line, or None when there is nothing to say."""
    facts: list[str] = []
    if metadata.model:
        facts.append(metadata.model + (f" ({metadata.provider})" if metadata.provider else ""))
    if (usage := metadata.token_usage) is not None:
        facts.append(
            f"tokens {usage.prompt_tokens} in + {usage.completion_tokens} out"
            f" = {usage.total_tokens}"
        )
    if (cost := metadata.cost) is not None:
        facts.append(f"cost {cost.total_cost:.6f} {cost.currency}")
    if (stats := metadata.stats) is not None:
        facts.append(f"llm calls {stats.llm_calls}, tool calls {stats.tool_calls}")
    if metadata.duration_ms is not None:
        facts.append(f"{metadata.duration_ms} ms")
    if metadata.finish_reason is not None:
        facts.append(f"finish {metadata.finish_reason}")
    return ", ".join(facts) if facts else None


def message_lines(message: Message, colours: Colours, indent: str = "  ") -> Iterator[str]:
    """A message as a few lines: role and content, then its parts and metadata if they say more."""
    yield f"{indent}{colours.paint(message.role, f'[{message.role}]')} {preview(message.content)}"
    if message.parts != (TextPart(text=message.content),):
        for part in message.parts:
            style = "tool" if isinstance(part, ToolCallPart | ToolResultPart) else "dim"
            if isinstance(part, ToolResultPart) and part.is_error:
                style = "error"
            yield f"{indent}    {colours.paint(style, describe_part(part))}"
    if (facts := describe_metadata(message.metadata)) is not None:
        yield f"{indent}    {colours.paint('dim', facts)}"


def _header(entry: AuditEntry, colours: Colours) -> str:
    when = entry.time.isoformat(timespec="milliseconds")
    head = f"#{entry.sequence:<6} {when}  {entry.event_type:<16} {entry.actor or '-'}"
    return colours.paint("bold", head)


def replay_lines(entries: Sequence[AuditEntry], colours: Colours) -> Iterator[str]:
    """Each event with the conversation as it changed: who said what, tools, tokens, cost."""
    for entry in entries:
        yield _header(entry, colours)
        state, event = entry.state, entry.event
        if isinstance(event, MessageDeleted | ThreadDeleted):
            yield "  " + colours.paint("error", f"deleted {event.message_id or event.thread_id}")
        elif isinstance(state, Message):
            yield from message_lines(state, colours)
        elif isinstance(state, Thread):
            owner = f"tenant {state.tenant_id}, user {state.user_id}"
            yield f"  thread {state.id} {state.title!r} ({owner})"


def history_lines(entries: Sequence[AuditEntry], colours: Colours) -> Iterator[str]:
    """One line per event: sequence, server time, type, actor, and the state it left."""
    for entry in entries:
        state = entry.state
        if isinstance(state, Message):
            after = f"[{state.role}] {preview(state.content)}"
        elif isinstance(state, Thread):
            after = f"title {state.title!r}"
        else:
            after = "-"
        if state is not None and state.deleted_at is not None:
            after += colours.paint("error", " (deleted)")
        yield f"{_header(entry, colours)}  {after}"


def summary_line(summary: TrailSummary) -> str:
    """What an execution did and cost, in one line."""
    cost = ", ".join(f"{amount:.6f} {currency}" for currency, amount in summary.cost.items())
    return (
        f"summary: {summary.messages} message(s) in {summary.events} event(s); "
        f"{summary.llm_calls} LLM call(s), {summary.tool_calls} tool call(s) "
        f"({summary.tool_errors} failed); tokens {summary.prompt_tokens} in + "
        f"{summary.completion_tokens} out = {summary.total_tokens}; cost {cost or 'none'}; "
        f"reported {summary.reported_duration_ms} ms; wall time {summary.wall_time:.3f}s; "
        f"models {', '.join(summary.models) or '-'}; "
        f"finish {', '.join(summary.finish_reasons) or '-'}"
    )


def entries_json(
    entries: Sequence[AuditEntry], *, about: dict[str, str], summary: TrailSummary | None = None
) -> bytes:
    """The entries as one JSON document: the ``about`` fields, ``entries`` and ``summary``."""
    document: dict[str, object] = dict(about)
    document["entries"] = [
        {
            "sequence": entry.sequence,
            "time": entry.time,
            "event_type": entry.event_type,
            "actor": entry.actor,
            "event": msgspec.Raw(entry.data),
            "state": entry.state.model_dump(mode="json") if entry.state is not None else None,
        }
        for entry in entries
    ]
    if summary is not None:
        document["summary"] = dataclasses.asdict(summary)
    return msgspec.json.encode(document)
