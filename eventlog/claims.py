"""Id claims: one owner per message id across every partition of a stream.

On a partitioned stream a message lives in its thread's partition, and no one fold sees
every partition, so no fold can refuse a message id that a thread of another partition
already holds. Before a message is first created, its writer claims the id in a key-value
bucket beside the stream (``<stream>_ids``): a create-only put, which the server grants to
exactly one owner (the thread), however many writers race. The same owner claiming again
(a retry, a write decided again) is granted again. A claim whose append never happened
(the writer died in between) keeps the id for that thread: that thread may still create
it, no other may.

Claims made at once are gathered (:class:`~eventlog.group.Coalescer`). Many go as one
atomic batch on the bucket's stream: one fsync for all, as group commit does for events. A
batch with a claim already taken is refused whole; its claims are then made one by one. A
few go side by side, each on its own, as a few appends do (see
:data:`~eventlog.group.ATOMIC_FROM`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import nats.js.errors
from nats.js import api

from eventlog._nats import JS_STREAM_NAME_IN_USE
from eventlog.errors import ConvlogError, UnavailableError
from eventlog.group import ATOMIC_FROM, Coalescer, Pending
from eventlog.subjects import encode_token

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from eventlog.log import EventLog

__all__ = ["IdClaims"]

_HISTORY: Final = 1
_PAUSE: Final = 0.1
"""Seconds between tries of a claim that nothing answered (a new replicated bucket electing)."""


@dataclass(frozen=True, slots=True)
class _Claim:
    message_id: str
    key: str
    owner: str


class IdClaims:
    """The claims of one stream's message ids; the bucket is made on first use."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.bucket = f"{log.stream.name}_ids"
        self._kv: KeyValue | None = None
        self._atomic = False
        self._opening = asyncio.Lock()
        self._claims: Coalescer[_Claim, str | None] = Coalescer(
            self._commit, keys=lambda claim: (claim.key,)
        )

    async def claim(self, message_id: str, tenant_id: str, thread_id: str) -> str | None:
        """Claim ``message_id`` for the thread; None if granted, else the owner's subject.

        A claim that nothing answers is tried again within the write timeout: a claim is
        idempotent, and a replicated bucket just made (or one whose leader moved) answers
        nothing until its group has elected a leader.
        """
        owner = self._log.subjects.thread(tenant_id, thread_id)
        claim = _Claim(message_id, f"m.{encode_token(message_id)}", owner)
        deadline = time.monotonic() + self._log.write_timeout
        while True:
            try:
                await self._bucket()
                return await self._claims.submit(claim)
            except UnavailableError:
                if time.monotonic() + _PAUSE >= deadline:
                    raise
                await asyncio.sleep(_PAUSE)

    async def _commit(self, batch: list[Pending[_Claim, str | None]]) -> None:
        if len(batch) >= ATOMIC_FROM and self._atomic:
            messages: list[tuple[str, bytes, dict[str, str]]] = [
                (
                    f"$KV.{self.bucket}.{pending.item.key}",
                    pending.item.owner.encode(),
                    {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"},
                )
                for pending in batch
            ]
            try:
                await self._log.publish_batch(messages, size=sum(len(m[1]) for m in messages))
            except UnavailableError as err:
                for pending in batch:
                    pending.settle(error=err)
                return
            except ConvlogError:
                pass  # one was taken (or retried): each on its own says which
            else:
                for pending in batch:
                    pending.settle(None)
                return
        await asyncio.gather(*(self._commit_one(pending) for pending in batch))

    async def _commit_one(self, pending: Pending[_Claim, str | None]) -> None:
        claim = pending.item
        kv = await self._bucket()
        try:
            with self._log.nats_errors.translating(f"claim message id {claim.message_id!r}"):
                try:
                    await kv.create(claim.key, claim.owner.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    entry = await kv.get(claim.key)
                    held = (entry.value or b"").decode()
                    pending.settle(None if held == claim.owner else held)
                    return
        except ConvlogError as err:
            pending.settle(error=err)
            return
        pending.settle(None)

    async def _bucket(self) -> KeyValue:
        """The bucket, opened or made once however many claims come at once."""
        if self._kv is None:
            async with self._opening:
                if self._kv is None:
                    self._kv = await self._open()
        return self._kv

    async def _open(self) -> KeyValue:
        js = self._log.jetstream
        with self._log.nats_errors.translating(f"open bucket {self.bucket!r}"):
            try:
                kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                kv = await self._create()
            if self._log.supports_atomic:
                self._atomic = await self._allow_atomic()
        return kv

    async def _create(self) -> KeyValue:
        """Make the bucket; if another process made it meanwhile, open theirs.

        Theirs may already take atomic batches, a configuration ours lacks: the server
        then refuses ours as a different stream of the same name.
        """
        js = self._log.jetstream
        try:
            return await js.create_key_value(
                api.KeyValueConfig(
                    bucket=self.bucket,
                    history=_HISTORY,
                    storage=api.StorageType.FILE,
                    replicas=self._log.replicas,
                )
            )
        except nats.js.errors.APIError as err:
            if err.err_code != JS_STREAM_NAME_IN_USE:
                raise
            return await js.key_value(self.bucket)

    async def _allow_atomic(self) -> bool:
        """Let the bucket's stream take atomic batches (a KV bucket is made without)."""
        js = self._log.jetstream
        info = await js.stream_info(f"KV_{self.bucket}")
        if not info.config.allow_atomic:
            info.config.allow_atomic = True
            try:
                await js.update_stream(info.config)
            except nats.js.errors.APIError:
                return False  # claims then go one by one, as before batches
        return True
