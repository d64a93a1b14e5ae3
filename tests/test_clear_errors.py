"""Clear errors instead of tracebacks, and the payload limit a user expects (issue 10).

Each bad input or bad server gets a convlog error whose message says what, where and what
to do; each test checks that message. Servers are real: a nats-server started without
JetStream, and TCP listeners that are not NATS at all.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

import pytest

from eventlog import (
    ConnectOptions,
    ConvlogError,
    EventLog,
    Message,
    MessageCreated,
    MessageMetadata,
    PayloadTooLargeError,
    TextPart,
    Thread,
    ThreadCreated,
    UnavailableError,
    ValidationError,
    verify_chains,
)
from eventlog.events import event_digest, new_event_id
from eventlog.server import find_nats_server
from projections import InMemoryMessageStore, JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from conftest import StoreFactory

    from projections import MessageStore

    Listen = Callable[[bytes], Awaitable[str]]

KB = 1024


# --- servers that cannot host the log ---------------------------------------------------


async def _ready_url(stderr: asyncio.StreamReader) -> str:
    """The client URL a starting nats-server logs, returned once it logs that it is ready."""
    url = ""
    async for line in stderr:
        text = line.decode()
        if found := re.search(r"Listening for client connections on (\S+)", text):
            url = f"nats://{found.group(1)}"
        if "Server is ready" in text:
            return url
    raise AssertionError("nats-server exited before it was ready")


@pytest.fixture
async def no_jetstream_url() -> AsyncIterator[str]:
    """A real nats-server without JetStream, on a port it picks; stopped by its pid."""
    process = await asyncio.create_subprocess_exec(
        str(find_nats_server()),
        *("-a", "127.0.0.1", "-p", "-1"),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            url = await _ready_url(process.stderr)
        yield url
    finally:
        process.terminate()
        await process.wait()


async def test_event_log_says_jetstream_is_not_enabled(no_jetstream_url: str) -> None:
    """A server without -js: UnavailableError naming the server and the flag to add."""
    expected = (
        f"^JetStream is not enabled on {re.escape(no_jetstream_url)}; "
        r"start nats-server with -js, or add `jetstream \{\}` to its configuration\.$"
    )
    with pytest.raises(UnavailableError, match=expected) as caught:
        await EventLog.connect(no_jetstream_url)
    assert caught.value.url == no_jetstream_url


async def test_store_says_jetstream_is_not_enabled(no_jetstream_url: str) -> None:
    """JetStreamMessageStore.connect gives the same sentence, not a nats-py traceback."""
    with pytest.raises(
        UnavailableError, match=r"^JetStream is not enabled on nats://127\.0\.0\.1:"
    ):
        await JetStreamMessageStore.connect(no_jetstream_url)


@pytest.fixture
async def listener() -> AsyncIterator[Listen]:
    """Start TCP servers that are not NATS: each greets a client with the given bytes."""
    servers: list[asyncio.Server] = []

    async def start(greeting: bytes) -> str:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(greeting)
            await writer.drain()
            await reader.read()  # until the client hangs up
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        servers.append(server)
        return f"nats://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("greeting", "said"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "(it sent b'HTTP')"),
        (b"", "(it sent nothing within 1.0 s)"),
    ],
    ids=["http", "silent"],
)
async def test_a_listener_that_is_not_nats(listener: Listen, greeting: bytes, said: str) -> None:
    """Something else on the port: 'did not answer as a NATS server', within the timeout."""
    url = await listener(greeting)
    address = url.removeprefix("nats://")
    expected = (
        f"^NATS at {re.escape(url)} is unavailable: no NATS server answers "
        f"\\({re.escape(address)} did not answer as a NATS server {re.escape(said)}\\); "
        "check the URL and port\\.$"
    )
    async with asyncio.timeout(30):
        with pytest.raises(UnavailableError, match=expected):
            await EventLog.connect(url, options=ConnectOptions(connect_timeout=1.0))


# --- text UTF-8 cannot store -------------------------------------------------------------


def _with_bad_content(thread_id: str) -> Message:
    return Message.user(thread_id, "half a pair: \ud800")


def _with_bad_part(thread_id: str) -> Message:
    return Message.user(thread_id, "fine").with_parts([TextPart(text="\udfff")])


def _with_bad_metadata(thread_id: str) -> Message:
    return Message.user(thread_id, "fine").with_metadata(MessageMetadata(model="gpt\ud83d"))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (_with_bad_content, "message.content"),
        (_with_bad_part, "message.parts[0].text"),
        (_with_bad_metadata, "message.metadata.model"),
    ],
    ids=["content", "part", "metadata"],
)
async def test_a_lone_surrogate_names_its_field(
    store: MessageStore, make: Callable[[str], Message], field: str
) -> None:
    """Both stores refuse the message before sending it, naming the field; the log is intact."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = make(thread.id)
    with pytest.raises(
        ValidationError,
        match=f"^{re.escape(field)} of event message.created holds a lone surrogate, "
        "which is not text UTF-8 can store; nothing was written",
    ):
        await store.create_message(message)
    assert await store.get_message(message.id) is None
    assert await store.get_thread(thread.id) == thread
    assert (await store.health_check()).skipped == ()


async def test_a_lone_surrogate_in_a_title_or_an_update(store: MessageStore) -> None:
    """A thread's title and a message update are checked the same way; the old version stays."""
    untitled = Thread.new("acme", "alice")
    bad_thread = untitled.model_copy(update={"title": "\ud800"})
    with pytest.raises(ValidationError, match=r"^thread\.title of event thread\.created "):
        await store.create_thread(bad_thread)
    assert await store.get_thread(untitled.id) is None
    await store.create_thread(untitled)
    message = Message.user(untitled.id, "hello")
    await store.create_message(message)
    edit = message.model_copy(update={"content": "\ud800"})
    with pytest.raises(ValidationError, match=r"^message\.content of event message\.updated "):
        await store.update_message(edit)
    assert await store.get_message(message.id) == message


def test_a_lone_surrogate_in_a_json_key_is_refused() -> None:
    """pydantic would write it as U+FFFD without a word: the model refuses it instead."""
    with pytest.raises(
        ConvlogError, match=r"^Message\.parts\.0\.tool-call\.args: Value error, the key 'k\\ud800'"
    ):
        Message.user("thread_1", "x").with_parts(
            [{"type": "tool-call", "tool_call_id": "t", "tool_name": "n", "args": {"k\ud800": 1}}]
        )


# --- the models' own validation -----------------------------------------------------------


def test_model_errors_are_convlog_errors_naming_the_field() -> None:
    """Building a model with a bad field raises convlog's ValidationError, a ConvlogError."""
    with pytest.raises(ConvlogError, match=r"^TextPart\.text: Input should be a valid string"):
        Message.user("thread_1", 5)  # type: ignore[arg-type]
    with pytest.raises(
        ValidationError,
        match=r"^Message\.parts\.0\.text\.text: Field required; "
        r"Message\.metadata: Field required; correct the values and build it again\.$",
    ):
        Message(
            id="msg_1",
            thread_id="thread_1",
            parent_type="user_message",
            role="user",
            content="hi",
            parts=[{"type": "text"}],
            created_at="2024-05-06T07:08:09Z",
        )  # type: ignore[call-arg]


def test_a_long_bad_value_is_quoted_short() -> None:
    """What was given is shown in part: an error about 1 MB of text is one line."""
    with pytest.raises(ValidationError) as caught:
        TextPart(text=["x" * (1024 * KB)])  # type: ignore[arg-type]
    assert len(str(caught.value)) < 200


# --- page bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10", 10.0, True, None, -1], ids=repr)
@pytest.mark.parametrize("name", ["limit", "offset"])
async def test_page_bounds_must_be_integers(store: MessageStore, name: str, value: object) -> None:
    """A str, float, bool, None or negative limit or offset: ValidationError, in both stores."""
    bounds: dict[str, object] = {"limit": 10, "offset": 0, name: value}
    with pytest.raises(
        ValidationError, match=f"^{name} must be an integer ≥ 0, not {re.escape(repr(value))}; "
    ):
        await store.list_threads("acme", "alice", **bounds)  # type: ignore[arg-type]


# --- the payload limit ------------------------------------------------------------------------


async def _thread_with(store: MessageStore, content: str) -> tuple[Thread, Message]:
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = Message.user(thread.id, content)
    await store.create_message(message)
    return thread, message


async def test_900_kb_of_text_fits_under_a_1_mb_payload(connect_store: StoreFactory) -> None:
    """Content repeated as its text part is stored once, and reads back as the seed's JSON."""
    store = await connect_store()
    content = "é" * (450 * KB)  # 900 KB in UTF-8
    _, message = await _thread_with(store, content)
    assert store.log.max_payload == 1024 * KB
    record = [record async for record in store.log.read()][-1]
    assert len(record.data) < len(content.encode()) + 2 * KB
    again = await connect_store()  # folds the stored bytes afresh
    for reader in (store, again):
        read = await reader.get_message(message.id)
        assert read == message
        assert read is not None
        assert json.loads(read.model_dump_json())["parts"] == [{"type": "text", "text": content}]


async def test_over_a_megabyte_is_still_refused(store: MessageStore) -> None:
    """1.1 MB of content is over the limit in both stores, once counted; nothing is stored."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = Message.user(thread.id, "x" * (1126 * KB))
    with pytest.raises(PayloadTooLargeError, match=r"^event message\.created is \d+ bytes, over"):
        await store.create_message(message)
    assert await store.count_messages(thread.id) == 0


async def test_in_memory_store_takes_900_kb_too() -> None:
    """The in-memory store keeps the server's default limit, and counts the text once too."""
    store = InMemoryMessageStore()
    _, message = await _thread_with(store, "x" * (900 * KB))
    assert await store.get_message(message.id) == message


async def test_records_with_the_text_twice_still_read_and_verify(event_log: EventLog) -> None:
    """Records stored before the text was elided decode to the same message and verify."""
    thread = Thread.new("acme", "alice")
    created = ThreadCreated(
        event_id=new_event_id(),
        occurred_at=thread.created_at,
        tenant_id=thread.tenant_id,
        thread_id=thread.id,
        thread=thread,
    )
    first = event_log.encode(created)
    await event_log.append(created, payload=first)
    message = Message.user(thread.id, "said twice")
    event = MessageCreated(
        event_id=new_event_id(),
        occurred_at=message.created_at,
        tenant_id=thread.tenant_id,
        thread_id=thread.id,
        message_id=message.id,
        message=message,
        prev_hash=event_digest(first),
    )
    elided = event_log.encode(event)
    old = elided.replace(b'[{"type":"text"}]', b'[{"type":"text","text":"said twice"}]')
    assert old != elided
    await event_log.append(event, payload=old)
    assert event_log.codec.decode(old) == event
    assert event_log.codec.decode_data(old).message.model() == message  # type: ignore[union-attr]
    assert (await verify_chains(event_log)).ok
    async with await JetStreamMessageStore.connect(
        event_log.url, stream=event_log.stream.name, subject_prefix=event_log.stream.subject_prefix
    ) as store:
        assert await store.list_messages(thread.id) == [message]
