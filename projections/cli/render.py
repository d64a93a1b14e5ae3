"""How the command line shows threads, messages and events to people, through rich.

One line per event everywhere (``tail``, ``history``, ``replay``, the demo): sequence,
server time, type, actor, then what the event left behind. Styles are rich's, so colour
follows the terminal, ``--color`` and ``NO_COLOR`` as rich decides them.
"""

from __future__ import annotations

import errno
import sys
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.text import Text

from eventlog import (
    CodePart,
    FilePart,
    ImagePart,
    Message,
    MessageCreated,
    MessageUpdated,
    ReasoningPart,
    SourcePart,
    TextPart,
    Thread,
    ThreadCreated,
    ThreadUpdated,
    ToolCallPart,
    ToolResultPart,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from eventlog import AnyEvent, MessageMetadata, MessagePart
    from projections.audit import AuditEntry, TrailSummary
    from projections.fold import SkippedEvent

__all__ = [
    "console",
    "dead_letter_lines",
    "entity_of",
    "event_line",
    "history_lines",
    "message_lines",
    "preview",
    "replay_lines",
    "summary_line",
    "thread_lines",
]

_PREVIEW: Final = 60
"""Characters of free text shown per line before it is cut with an ellipsis."""
_DEAD_LETTERS_SHOWN: Final = 20
"""Dead letters listed one a line; the rest are counted, so a damaged log stays readable."""
_STYLES: Final = {
    "user": "green",
    "assistant": "cyan",
    "system": "magenta",
    "tool": "yellow",
    "error": "red",
}


class _Console(Console):
    """A rich console that leaves a broken pipe to ``main``, which exits 141 as shells do."""

    def on_broken_pipe(self) -> None:
        """Raise it again: rich would exit 1 here."""
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def console(color: str = "never", *, stderr: bool = False) -> Console:
    """A console for plain lines: ``color`` "always", "never" or "auto" (a terminal, no NO_COLOR).

    No markup, highlighting or wrapping: the text is data (``[user]`` is not a tag) and a
    long line stays one line for grep.
    """
    forced = {"always": True, "never": False}.get(color)
    return _Console(
        file=sys.stderr if stderr else sys.stdout,
        force_terminal=forced,
        no_color=False if forced else None,
        color_system=None if forced is False else "auto",
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=True,
    )


def preview(text: str) -> str:
    """``text`` on one line, quoted, cut to a readable length."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…")


def _part_text(part: MessagePart) -> str:
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


def _metadata_text(metadata: MessageMetadata) -> str | None:
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


def _said(message: Message) -> Text:
    """``[role] 'content'``, the role in its colour."""
    return Text.assemble((f"[{message.role}]", _STYLES.get(message.role, "")), " ").append(
        preview(message.content)
    )


def message_lines(message: Message, indent: str = "  ") -> Iterator[Text]:
    """A message as a few lines: role and content, then its parts and metadata if they say more."""
    yield Text(indent).append_text(_said(message))
    if message.parts != (TextPart(text=message.content),):
        for part in message.parts:
            style = "yellow" if isinstance(part, ToolCallPart | ToolResultPart) else "dim"
            if isinstance(part, ToolResultPart) and part.is_error:
                style = "red"
            yield Text(f"{indent}    ").append(_part_text(part), style)
    if (facts := _metadata_text(message.metadata)) is not None:
        yield Text(f"{indent}    ").append(facts, "dim")


def thread_lines(thread: Thread, messages: Sequence[Message]) -> Iterator[Text]:
    """A thread and its messages as the views hold them."""
    owner = f"tenant {thread.tenant_id}, user {thread.user_id}"
    yield Text(f"thread {thread.id} {thread.title!r} ({owner})")
    for message in messages:
        yield from message_lines(message)


def entity_of(event: AnyEvent) -> Message | Thread | None:
    """The message or thread an event carries as it stood after it (deletes carry none)."""
    match event:
        case MessageCreated(message=message) | MessageUpdated(message=message):
            return message
        case ThreadCreated(thread=thread) | ThreadUpdated(thread=thread):
            return thread
    return None


def event_line(
    *,
    sequence: int,
    time: datetime,
    event_type: str,
    actor: str | None,
    after: Message | Thread | None = None,
    where: str | None = None,
) -> Text:
    """The one line of an event: ``#SEQ TIME TYPE [WHERE] ACTOR``, then the state it left."""
    when = time.isoformat(timespec="milliseconds")
    head = f"#{sequence:<6} {when}  {event_type:<16} " + (f"{where}  " if where else "")
    line = Text().append(head + (actor or "-"), "bold")
    if isinstance(after, Message):
        line.append("  ").append_text(_said(after))
    elif isinstance(after, Thread):
        line.append(f"  title {after.title!r}")
    if after is not None and after.deleted_at is not None:
        line.append(" (deleted)", "red")
    return line


def _entry_line(entry: AuditEntry, *, with_state: bool) -> Text:
    return event_line(
        sequence=entry.sequence,
        time=entry.time,
        event_type=entry.event_type,
        actor=entry.actor,
        after=entry.state if with_state else None,
    )


def history_lines(entries: Iterable[AuditEntry]) -> Iterator[Text]:
    """One line per event: sequence, server time, type, actor, and the state it left."""
    for entry in entries:
        yield _entry_line(entry, with_state=True)


def replay_lines(entries: Iterable[AuditEntry]) -> Iterator[Text]:
    """Each event with the conversation as it changed: who said what, tools, tokens, cost."""
    for entry in entries:
        yield _entry_line(entry, with_state=False)
        state, event = entry.state, entry.event
        if entity_of(event) is None:
            yield Text("  ").append(f"deleted {event.message_id or event.thread_id}", "red")
        elif isinstance(state, Message):
            yield from message_lines(state)
        elif isinstance(state, Thread):
            owner = f"tenant {state.tenant_id}, user {state.user_id}"
            yield Text(f"  thread {state.id} {state.title!r} ({owner})")


def summary_line(summary: TrailSummary) -> Text:
    """What an execution did and cost, in one line."""
    cost = ", ".join(f"{amount:.6f} {currency}" for currency, amount in summary.cost.items())
    return Text(
        f"summary: {summary.messages} message(s) in {summary.events} event(s); "
        f"{summary.llm_calls} LLM call(s), {summary.tool_calls} tool call(s) "
        f"({summary.tool_errors} failed); tokens {summary.prompt_tokens} in + "
        f"{summary.completion_tokens} out = {summary.total_tokens}; cost {cost or 'none'}; "
        f"reported {summary.reported_duration_ms} ms; wall time {summary.wall_time:.3f}s; "
        f"models {', '.join(summary.models) or '-'}; "
        f"finish {', '.join(summary.finish_reasons) or '-'}",
        "bold",
    )


def dead_letter_lines(skipped: Sequence[SkippedEvent]) -> Iterator[Text]:
    """A count, then one line per record the projection skipped: sequence, subject, reason."""
    yield Text(
        f"dead letters: {len(skipped)} record(s) the projection skips"
        if skipped
        else "dead letters: none"
    )
    for record in skipped[:_DEAD_LETTERS_SHOWN]:
        yield Text(f"  #{record.sequence} on {record.subject}: {record.reason}")
    if len(skipped) > _DEAD_LETTERS_SHOWN:
        yield Text(f"  … and {len(skipped) - _DEAD_LETTERS_SHOWN} more")
