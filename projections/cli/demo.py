"""``convlog demo``: the log end to end, on an agent conversation about the weather.

It writes the conversation, prints it as the views answer it and as the log stores it,
then checks that views rebuilt from the stream equal the live ones.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from uuid_utils import uuid7

from eventlog import (
    ConvlogError,
    CostInfo,
    ExecutionId,
    ExecutionStats,
    FinishReason,
    Message,
    MessageMetadata,
    ReasoningPart,
    TenantId,
    TextPart,
    Thread,
    ThreadId,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UserId,
    event_context,
)
from projections.cli.options import EXIT_ERROR, EXIT_OK
from projections.cli.render import console, history_lines, thread_lines
from projections.cli.server import connect, nats_server
from projections.commands import utc_now
from projections.errors import RebuildMismatchError

if TYPE_CHECKING:
    import argparse

    from projections.cli.options import Commands, Target
    from projections.store import JetStreamMessageStore

__all__ = ["add_demo", "weather_conversation"]

_DIGEST_SHOWN: Final = 12


def weather_conversation(thread_id: ThreadId) -> list[Message]:
    """A system prompt, a user question, and an agent's answer that called a tool."""
    system = Message.system(thread_id, "You are a concise weather assistant. Use tools.")
    question = Message.user(thread_id, "What's the weather like in Paris right now?")
    execution_id = ExecutionId.new()
    call_id = f"call_{uuid7().hex[-12:]}"
    answer_text = "It's 18°C and sunny in Paris right now."
    prompt_tokens, completion_tokens = 412, 96
    input_cost = round(prompt_tokens * 2.50 / 1e6, 6)  # gpt-4o list prices per token, USD
    output_cost = round(completion_tokens * 10.00 / 1e6, 6)
    answer = (
        Message.assistant(thread_id, execution_id, answer_text, parent_id=question.id)
        .with_parts(
            [
                ReasoningPart(text="The user asks for live weather: call get_weather for Paris."),
                ToolCallPart(tool_call_id=call_id, tool_name="get_weather", args={"city": "Paris"}),
                ToolResultPart(
                    tool_call_id=call_id,
                    tool_name="get_weather",
                    result={"temp_c": 18, "conditions": "sunny"},
                    is_error=False,
                ),
                TextPart(text=answer_text),
            ]
        )
        .with_metadata(
            MessageMetadata(
                completed_at=int(time.time() * 1000),
                duration_ms=2310,
                model="gpt-4o",
                provider="openai",
                token_usage=TokenUsage.new(prompt_tokens, completion_tokens),
                stats=ExecutionStats(llm_calls=2, tool_calls=1, steps=3),
                finish_reason=FinishReason.STOP,
                cost=CostInfo(
                    input_cost=input_cost,
                    output_cost=output_cost,
                    total_cost=round(input_cost + output_cost, 6),
                ),
            )
        )
    )
    return [system, question, answer]


async def _write_demo(store: JetStreamMessageStore) -> Thread:
    """Write the demo thread and its conversation as the weather agent would."""
    now = utc_now()
    thread = Thread(
        id=ThreadId.new(),
        tenant_id=TenantId.from_string("acme"),
        user_id=UserId.from_string("alice"),
        title="Weather in Paris",
        created_at=now,
        updated_at=now,
    )
    with event_context(actor="agent:weather", correlation_id=f"req_{uuid7().hex}"):
        await store.create_thread(thread)
        for message in weather_conversation(thread.id):
            await store.create_message(message)
    return thread


async def demo(target: Target, _: argparse.Namespace) -> int:
    """Write a conversation, print views and events, and check a rebuilt view matches."""
    out = console("auto")
    async with nats_server(target, target.data_dir) as url, await connect(target, url) as store:
        thread = await _write_demo(store)
        projected = await store.get_thread(thread.id)
        if projected is None:  # pragma: no cover - the store reads its own writes
            raise ConvlogError(f"thread {thread.id!r} is missing from the views")
        for line in thread_lines(projected, await store.list_messages(thread.id)):
            out.print(line)
        subject = store.log.subjects.thread(thread.tenant_id, thread.id)
        out.print(f"\nevents in stream {store.log.stream.name} on {subject}:")
        for line in history_lines(await store.thread_history(thread.id)):
            out.print(line)
        try:
            rebuilt = await store.rebuild(verify=True)  # at the sequence the views have folded
        except RebuildMismatchError as err:
            out.print(
                f"\nrebuilt view matches: NO (live digest {err.live[:_DIGEST_SHOWN]}…, "
                f"rebuilt {err.rebuilt[:_DIGEST_SHOWN]}…)"
            )
            return EXIT_ERROR
    out.print(
        f"\nrebuilt view matches: yes (digest {rebuilt.digest[:_DIGEST_SHOWN]}… at sequence "
        f"{rebuilt.sequence})"
    )
    out.print(f"\n{_where_the_log_is(target, thread.id)}")
    return EXIT_OK


def _where_the_log_is(target: Target, thread_id: str) -> str:
    """Where the demo's log lives now, and a follow-up command that reads it there."""
    follow_up = f"convlog replay --thread {thread_id}"
    if target.nats_url:
        return (
            f"the log is stream {target.stream} at {target.nats_url}; see it again with "
            f"`{follow_up} --nats-url {target.nats_url}`"
        )
    if target.data_dir:
        return (
            f"the log is kept in {target.data_dir}; see it again with "
            f"`{follow_up} --data-dir {target.data_dir}`"
        )
    return (
        "the log lived in a temporary directory, removed now; to keep it, run "
        "`convlog demo --data-dir DIR`, then e.g. `convlog replay --thread ID --data-dir DIR`"
    )


def add_demo(commands: Commands) -> None:
    """Add ``convlog demo``."""
    commands.add(
        "demo", demo, "write an agent conversation, show views and events, check a rebuild"
    )
