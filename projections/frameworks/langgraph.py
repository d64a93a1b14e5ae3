"""A LangGraph checkpointer whose checkpoints and pending writes are convlog messages.

``ConvlogSaver`` is bound to one tenant and user. Each LangGraph ``thread_id`` is one
convlog thread of theirs (every ``checkpoint_ns`` inside it, so a graph and its subgraphs
share one hash chain); each checkpoint is a system message and each pending write an
assistant message, so a graph's history is audited, replayed and subscribed to with the
rest of the log. A message's ``CodePart`` holds the record as JSON, in the language
:data:`CHECKPOINT_LANGUAGE` or :data:`WRITE_LANGUAGE`; channel values go through the
saver's ``serde`` as ``{"type", "data"}`` with the bytes base64'd. A channel's value is
stored once, by the checkpoint that gave it a new version, as LangGraph's own savers do.

Deletes are soft: ``adelete_thread``, ``adelete_for_runs`` and ``aprune`` hide
checkpoints from every read, and the log keeps them. Only the async interface exists
(``ainvoke``, ``astream``, ``aget_state``); the sync one raises ``NotImplementedError``,
as ``BaseCheckpointSaver`` does, since the store is asyncio-only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)

from eventlog import (
    AlreadyExistsError,
    CodePart,
    ExecutionId,
    Message,
    MessageId,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    TenantId,
    TextPart,
    Thread,
    ThreadId,
    ToolCallPart,
    ToolResultPart,
    UserId,
    ValidationError,
)
from eventlog.log import MAX_BATCH
from projections.commands import utc_now
from projections.store import JetStreamMessageStore
from projections.transaction import Transaction

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.serde.base import SerializerProtocol

    from projections.store import InMemoryMessageStore

__all__ = ["CHECKPOINT_LANGUAGE", "WRITE_LANGUAGE", "ConvlogSaver"]

CHECKPOINT_LANGUAGE = "application/vnd.langgraph.checkpoint+json"
"""The ``CodePart.language`` of a checkpoint message.

Its JSON: ``thread_id``, ``checkpoint_ns``, ``checkpoint_id``, ``parent_checkpoint_id``,
``checkpoint`` (LangGraph's checkpoint less ``channel_values``), ``metadata``, and
``channels``: ``{channel: {"version", "type", "data"}}``, the values this checkpoint gave
a new version (``data`` is the serde's bytes in base64).
"""

WRITE_LANGUAGE = "application/vnd.langgraph.write+json"
"""The ``CodePart.language`` of a pending write message.

Its JSON: ``thread_id``, ``checkpoint_ns``, ``checkpoint_id``, ``task_id``,
``task_path``, ``idx`` (LangGraph's write index: negative for errors and interrupts),
``channel``, and the value as ``type`` and ``data``.
"""

_T = TypeVar("_T")
_PREFIX = "thread_lg_"
_SUMMARY_VALUE = 120  # characters of a message's text shown in a write's summary


def _digest(*parts: str) -> str:
    # JSON keeps the parts apart whatever they hold, so no two tuples share a digest.
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _jsonable(value: object) -> Any:  # noqa: ANN401 - any JSON value
    """A JSON copy of a tool's arguments or result; what JSON cannot hold becomes its str."""
    return json.loads(json.dumps(value, default=str))


def _configured(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _record(message: Message) -> tuple[str, dict[str, Any]] | None:
    """The language and JSON of a message this saver wrote, or None for any other."""
    for part in message.parts:
        if isinstance(part, CodePart) and part.language in (CHECKPOINT_LANGUAGE, WRITE_LANGUAGE):
            return part.language, json.loads(part.code)
    return None


@dataclass
class _Stored:
    """A LangGraph thread as its convlog thread holds it, decoded for one read."""

    checkpoints: dict[tuple[str, str], tuple[Message, dict[str, Any]]] = field(default_factory=dict)
    """(namespace, checkpoint id) -> its live message and JSON."""
    values: dict[tuple[str, str, object], dict[str, str]] = field(default_factory=dict)
    """(namespace, channel, version) -> the typed value; deleted checkpoints' too, since a
    kept checkpoint may still refer to a version an older one stored."""
    writes: dict[tuple[str, str], list[tuple[Message, dict[str, Any]]]] = field(
        default_factory=dict
    )
    """(namespace, checkpoint id) -> its live pending writes."""

    @classmethod
    def of(cls, messages: Iterable[Message]) -> _Stored:
        stored = cls()
        for message in messages:
            if (record := _record(message)) is None:
                continue
            language, body = record
            key = (body["checkpoint_ns"], body["checkpoint_id"])
            if language == CHECKPOINT_LANGUAGE:
                for channel, value in body["channels"].items():
                    stored.values[key[0], channel, value["version"]] = value
                if not message.is_deleted():
                    stored.checkpoints[key] = (message, body)
            elif not message.is_deleted():
                stored.writes.setdefault(key, []).append((message, body))
        return stored

    def newest_first(self) -> list[tuple[Message, dict[str, Any]]]:
        """Every live checkpoint, newest first (checkpoint ids grow with time)."""
        return [self.checkpoints[key] for key in sorted(self.checkpoints, key=lambda k: k[1])][::-1]

    def needed(self, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The stored values a checkpoint's channel versions name, by channel."""
        namespace = body["checkpoint_ns"]
        found: dict[str, dict[str, Any]] = {}
        for channel, version in body["checkpoint"]["channel_versions"].items():
            if (value := self.values.get((namespace, channel, version))) is not None:
                found[channel] = value
        return found


class ConvlogSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpoints of one tenant's user, stored as events on a convlog store.

    ``store`` is a :class:`~projections.JetStreamMessageStore` (or the in-memory store);
    one opened with ``tenant_id`` must be opened for this tenant. Reads come from the
    store's views, so a write is read back at once in this process; another process sees
    it once its store has folded it.
    """

    def __init__(
        self,
        store: JetStreamMessageStore | InMemoryMessageStore,
        *,
        tenant_id: str,
        user_id: str,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(store, JetStreamMessageStore) and store.tenant_id not in (None, tenant_id):
            raise ValidationError(
                f"the store sees tenant {store.tenant_id!r} only; open one for {tenant_id!r}"
            )
        self.store = store
        self.tenant_id = TenantId.from_string(tenant_id)
        self.user_id = UserId.from_string(user_id)

    def get_next_version(self, current: str | None, channel: None) -> str:  # noqa: ARG002 - LangGraph's signature
        """A version sorting after ``current``, with a random tail, as ``InMemorySaver`` makes.

        Two branches forked from one checkpoint then never give one channel the same
        version, so a value stored for a version is that branch's.
        """
        number = 0 if current is None else int(str(current).split(".")[0])
        return f"{number + 1:032}.{secrets.token_hex(8)}"

    # --- where things are ----------------------------------------------------------------

    def _thread_ids(self, thread_id: str) -> Iterator[ThreadId]:
        """The convlog ids a LangGraph thread may have, one per generation.

        They are derived from tenant, user and thread id, so no two owners share one; a
        deleted thread stays on the log, and the thread id's next use takes the next id.
        """
        base = _PREFIX + _digest(self.tenant_id, self.user_id, thread_id)
        yield ThreadId(base)
        generation = 1
        while True:
            yield ThreadId(f"{base}_{generation}")
            generation += 1

    async def _live_thread(self, thread_id: str) -> ThreadId | None:
        for candidate in self._thread_ids(thread_id):
            thread = await self.store.get_thread(candidate)
            if thread is None:
                return None
            if not thread.is_deleted():
                return candidate
        return None  # pragma: no cover - the generations never end

    async def _thread_for_write(self, thread_id: str) -> ThreadId:
        """The LangGraph thread's live convlog thread, created if there is none."""
        for candidate in self._thread_ids(thread_id):
            thread = await self.store.get_thread(candidate)
            if thread is None:
                new = Thread.with_id(candidate, self.tenant_id, self.user_id)
                try:
                    await self.store.create_thread(
                        new.model_copy(update={"title": f"langgraph {thread_id}"})
                    )
                except AlreadyExistsError:
                    # Another writer created it first: that thread is this one.
                    return await self._thread_for_write(thread_id)
                return candidate
            if not thread.is_deleted():
                return candidate
        raise AssertionError  # pragma: no cover - the generations never end

    async def _owns(self, thread_id: str) -> bool:
        thread = await self.store.get_thread(thread_id)
        return (
            thread is not None
            and not thread.is_deleted()
            and (thread.tenant_id, thread.user_id) == (self.tenant_id, self.user_id)
        )

    async def _stored(self, thread: ThreadId) -> _Stored:
        """The thread's checkpoints and writes, once every one stored before is folded.

        Another process may have put a checkpoint a moment ago: reading without it would
        resume from an older one and fork the thread.
        """
        await self.store.catch_up(thread)
        return _Stored.of(await self.store.list_messages(thread, include_deleted=True))

    # --- encoding ------------------------------------------------------------------------

    def _dump(self, value: object) -> dict[str, str]:
        kind, data = self.serde.dumps_typed(value)
        return {"type": kind, "data": base64.b64encode(data).decode()}

    def _load(self, typed: dict[str, str]) -> Any:  # noqa: ANN401 - a channel's value
        return self.serde.loads_typed((typed["type"], base64.b64decode(typed["data"])))

    def _tuple(self, stored: _Stored, body: dict[str, Any]) -> CheckpointTuple:
        namespace, checkpoint_id = body["checkpoint_ns"], body["checkpoint_id"]
        values = {channel: self._load(v) for channel, v in stored.needed(body).items()}
        writes = sorted(
            (w for _, w in stored.writes.get((namespace, checkpoint_id), [])),
            key=lambda w: writes_sort_key(w["task_path"], w["task_id"], w["idx"]),
        )
        parent = body["parent_checkpoint_id"]
        return CheckpointTuple(
            config=_configured(body["thread_id"], namespace, checkpoint_id),
            checkpoint=cast("Checkpoint", {**body["checkpoint"], "channel_values": values}),
            metadata=body["metadata"],
            parent_config=None
            if parent is None
            else _configured(body["thread_id"], namespace, parent),
            pending_writes=[(w["task_id"], w["channel"], self._load(w)) for w in writes],
        )

    # --- reads ---------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint the config names, or its namespace's newest; None if there is none."""
        configurable = config["configurable"]
        thread = await self._live_thread(configurable["thread_id"])
        if thread is None:
            return None
        namespace = configurable.get("checkpoint_ns", "")
        stored = await self._stored(thread)
        if checkpoint_id := get_checkpoint_id(config):
            found = stored.checkpoints.get((namespace, checkpoint_id))
        else:
            found = next(
                (c for c in stored.newest_first() if c[1]["checkpoint_ns"] == namespace), None
            )
        return None if found is None else self._tuple(stored, found[1])

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - LangGraph's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first, as ``InMemorySaver`` lists them.

        Without a config, every LangGraph thread of this saver's user; ``filter`` matches
        metadata keys by equality; ``before`` keeps checkpoint ids below its own.
        """
        configurable = config["configurable"] if config else {}
        namespace = configurable.get("checkpoint_ns")
        checkpoint_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        left = limit
        async for thread in self._threads(configurable.get("thread_id")):
            stored = await self._stored(thread)
            for _, body in stored.newest_first():
                if left is not None and left <= 0:
                    return
                if (
                    (namespace is not None and body["checkpoint_ns"] != namespace)
                    or (checkpoint_id and body["checkpoint_id"] != checkpoint_id)
                    or (before_id and body["checkpoint_id"] >= before_id)
                    or any(body["metadata"].get(k) != v for k, v in (filter or {}).items())
                ):
                    continue
                if left is not None:
                    left -= 1
                yield self._tuple(stored, body)

    async def _threads(self, thread_id: str | None) -> AsyncIterator[ThreadId]:
        """The live convlog thread of ``thread_id``, or of every LangGraph thread of the user."""
        if thread_id is not None:
            if (thread := await self._live_thread(thread_id)) is not None:
                yield thread
            return
        page, offset = 1000, 0
        while threads := await self.store.list_threads(self.tenant_id, self.user_id, page, offset):
            for listed in threads:
                if listed.id.startswith(_PREFIX):
                    yield listed.id
            offset += page

    # --- writes ------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint as one message; its parent checkpoint's message is its parent.

        The same checkpoint put again replaces its message, and the log keeps both.
        """
        configurable = config["configurable"]
        thread_id, namespace = configurable["thread_id"], configurable.get("checkpoint_ns", "")
        thread = await self._thread_for_write(thread_id)
        values = checkpoint["channel_values"]
        body = {
            "thread_id": thread_id,
            "checkpoint_ns": namespace,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": configurable.get("checkpoint_id"),
            "checkpoint": {k: v for k, v in checkpoint.items() if k != "channel_values"},
            "metadata": get_serializable_checkpoint_metadata(config, metadata),
            "channels": {
                channel: {"version": version, **self._dump(values[channel])}
                for channel, version in new_versions.items()
                if channel in values
            },
        }
        parent = body["parent_checkpoint_id"]
        parent_id = None if parent is None else self._checkpoint_id(thread, namespace, parent)
        message = _checkpoint_message(
            self._checkpoint_id(thread, namespace, checkpoint["id"]), thread, body, parent_id
        )
        if await self.store.get_message(message.id) is None:
            await self.store.create_message(message)
        else:
            await self.store.update_message(message)
        return _configured(thread_id, namespace, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes as messages of one transaction: all of them or none.

        A regular write already stored for (task, index) is kept, as ``InMemorySaver``
        keeps it; an error, interrupt or resume write replaces the one before.
        """
        configurable = config["configurable"]
        thread_id, namespace = configurable["thread_id"], configurable.get("checkpoint_ns", "")
        checkpoint_id = configurable["checkpoint_id"]
        thread = await self._thread_for_write(thread_id)
        # LangGraph may save a checkpoint and its writes at once, in the background: the
        # run and the checkpoint's message id come from the config, not from that message.
        run_id = get_checkpoint_metadata(config, {}).get("run_id")
        checkpoint = self._checkpoint_id(thread, namespace, checkpoint_id)
        decided: dict[MessageId, tuple[Message, bool]] = {}
        for index, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, index)
            body = {
                "thread_id": thread_id,
                "checkpoint_ns": namespace,
                "checkpoint_id": checkpoint_id,
                "task_id": task_id,
                "task_path": task_path,
                "idx": idx,
                "channel": channel,
                **self._dump(value),
            }
            message = _write_message(
                self._write_id(thread, body),
                thread,
                body,
                value,
                checkpoint=checkpoint,
                run_id=run_id,
            )
            stored = await self.store.get_message(message.id) is not None
            if idx < 0 or not (stored or message.id in decided):
                decided[message.id] = (message, stored)
        if decided:
            async with self.store.transaction() as tx:
                for message, stored in decided.values():
                    (tx.update_message if stored else tx.create_message)(message)

    @staticmethod
    def _checkpoint_id(thread: ThreadId, namespace: str, checkpoint_id: str) -> MessageId:
        return MessageId(f"msg_lgc_{_digest(thread, namespace, checkpoint_id)}")

    @staticmethod
    def _write_id(thread: ThreadId, body: dict[str, Any]) -> MessageId:
        keys = ("checkpoint_ns", "checkpoint_id", "task_id", "idx")
        return MessageId(f"msg_lgw_{_digest(thread, *(str(body[k]) for k in keys))}")

    # --- deletes and copies --------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        """Soft-delete the LangGraph thread's convlog thread: every namespace, every write."""
        if (thread := await self._live_thread(thread_id)) is not None:
            await self.store.delete_thread(thread)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Soft-delete the checkpoints and writes of these runs (convlog executions)."""
        doomed = [
            message.id
            for run_id in run_ids
            for message in await self.store.get_messages_by_execution(run_id)
            if not message.is_deleted()
            and _record(message) is not None  # a checkpoint or a write, nothing else's
            and await self._owns(message.thread_id)
        ]
        await self._in_batches(doomed, Transaction.delete_message)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Soft-delete old checkpoints and their writes.

        ``keep_latest`` keeps each namespace's newest checkpoint; ``delete`` deletes the thread.
        """
        if strategy not in ("keep_latest", "delete"):
            raise ValidationError(f"unknown prune strategy {strategy!r}; use keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
            elif (thread := await self._live_thread(thread_id)) is not None:
                stored = await self._stored(thread)
                kept: set[str] = set()
                doomed: list[MessageId] = []
                for message, body in stored.newest_first():
                    namespace = body["checkpoint_ns"]
                    if namespace in kept:
                        writes = stored.writes.get((namespace, body["checkpoint_id"]), [])
                        doomed += [message.id, *(m.id for m, _ in writes)]
                    kept.add(namespace)
                await self._in_batches(doomed, Transaction.delete_message)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every live checkpoint and write to another thread of this user, oldest first.

        Each copy carries the values it needs that no earlier copy carries, so the target
        reads the same state without the source's deleted checkpoints. A copy already on
        the target is left as it is.
        """
        if (source := await self._live_thread(source_thread_id)) is None:
            return
        stored = await self._stored(source)
        target = await self._thread_for_write(target_thread_id)
        carried: set[tuple[str, str, object]] = set()
        copies: list[Message] = []
        for _, body in reversed(stored.newest_first()):
            namespace, parent = body["checkpoint_ns"], body["parent_checkpoint_id"]
            needed = {
                channel: value
                for channel, value in stored.needed(body).items()
                if (namespace, channel, value["version"]) not in carried
            }
            carried.update((namespace, channel, v["version"]) for channel, v in needed.items())
            copy = {**body, "thread_id": target_thread_id, "channels": needed}
            checkpoint = _checkpoint_message(
                self._checkpoint_id(target, namespace, body["checkpoint_id"]),
                target,
                copy,
                None
                if (namespace, parent) not in stored.checkpoints
                else self._checkpoint_id(target, namespace, parent),
            )
            copies.append(checkpoint)
            for message, write in stored.writes.get((namespace, body["checkpoint_id"]), []):
                write_copy = {**write, "thread_id": target_thread_id}
                copies.append(
                    _write_message(
                        self._write_id(target, write_copy),
                        target,
                        write_copy,
                        self._load(write),
                        checkpoint=checkpoint.id,
                        run_id=message.execution_id,
                    )
                )
        new = [m for m in copies if await self.store.get_message(m.id) is None]
        await self._in_batches(new, Transaction.create_message)

    async def _in_batches(
        self, items: Sequence[_T], write: Callable[[Transaction, _T], None]
    ) -> None:
        """Write in transactions of at most MAX_BATCH writes: each batch whole or not at all."""
        for start in range(0, len(items), MAX_BATCH):
            async with self.store.transaction() as tx:
                for item in items[start : start + MAX_BATCH]:
                    write(tx, item)


def _checkpoint_message(
    message_id: MessageId, thread: ThreadId, body: dict[str, Any], parent_id: MessageId | None
) -> Message:
    """A checkpoint as a system message: a summary, and its JSON in a CodePart."""
    metadata = body["metadata"]
    try:
        code = json.dumps(body, separators=(",", ":"))
    except TypeError as err:
        raise ValidationError(
            f"checkpoint {body['checkpoint_id']!r} has metadata JSON cannot hold ({err}); "
            "give metadata of strings, numbers, booleans, lists and objects"
        ) from err
    where = f" in {body['checkpoint_ns']!r}" if body["checkpoint_ns"] else ""
    summary = (
        f"checkpoint {body['checkpoint_id']}{where}: {metadata.get('source', '?')} step "
        f"{metadata.get('step', '?')}; new values: {', '.join(body['channels']) or 'none'}"
    )
    run_id = metadata.get("run_id")
    return Message(
        id=message_id,
        thread_id=thread,
        execution_id=ExecutionId.from_string(run_id) if run_id else None,
        parent_id=parent_id,
        parent_type=ParentType.EXECUTION if parent_id is None else ParentType.SYSTEM,
        role=MessageRole.SYSTEM,
        content=summary,
        parts=(TextPart(text=summary), CodePart(language=CHECKPOINT_LANGUAGE, code=code)),
        created_at=utc_now(),
        metadata=MessageMetadata(),
    )


def _write_message(
    message_id: MessageId,
    thread: ThreadId,
    body: dict[str, Any],
    value: object,
    *,
    checkpoint: MessageId,
    run_id: str | None,
) -> Message:
    """A pending write as an assistant message of its checkpoint's run.

    LangChain messages in the value are shown too: their text in the summary, tool calls
    and tool results as parts, so ``convlog replay`` counts them.
    """
    found = _messages_in(value)
    summary = f"{body['task_path'] or body['task_id']} wrote {body['channel']}" + "".join(
        f"; {type(m).__name__}: {m.text[:_SUMMARY_VALUE]}" for m in found
    )
    return Message(
        id=message_id,
        thread_id=thread,
        execution_id=ExecutionId.from_string(run_id) if run_id else None,
        parent_id=checkpoint,
        parent_type=ParentType.SYSTEM,
        role=MessageRole.ASSISTANT,
        content=summary,
        parts=(
            TextPart(text=summary),
            *(part for m in found for part in _tool_parts(m)),
            CodePart(language=WRITE_LANGUAGE, code=json.dumps(body, separators=(",", ":"))),
        ),
        created_at=utc_now(),
        metadata=MessageMetadata(),
    )


def _messages_in(value: object) -> list[BaseMessage]:
    """The LangChain messages a channel write holds: one, or a list of them."""
    items = value if isinstance(value, list | tuple) else [value]
    return [item for item in items if isinstance(item, BaseMessage)]


def _tool_parts(message: BaseMessage) -> list[MessagePart]:
    if isinstance(message, AIMessage):
        return [
            ToolCallPart(
                tool_call_id=call["id"] or "",
                tool_name=call["name"],
                args=_jsonable(call["args"]),
            )
            for call in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        return [
            ToolResultPart(
                tool_call_id=message.tool_call_id,
                tool_name=message.name or "",
                result=_jsonable(message.content),
                is_error=message.status == "error",
            )
        ]
    return []
