"""Id claims: one owner per message id across every partition of a stream.

On a partitioned stream a message lives in its thread's partition, and no one fold sees
every partition, so no fold can refuse a message id that a thread of another partition
already holds. Before a message is first created, its writer claims the id in a key-value
bucket beside the stream (``<stream>_ids``): a create-only put, which the server grants to
exactly one owner (the thread), however many writers race. The same owner claiming again
(a retry, a write decided again) is granted again. A claim whose append never happened
(the writer died in between) keeps the id for that thread: that thread may still create
it, no other may.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import nats.js.errors
from nats.js import api

from eventlog.errors import UnavailableError
from eventlog.subjects import encode_token

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from eventlog.log import EventLog

__all__ = ["IdClaims"]

_HISTORY: Final = 1
_PAUSE: Final = 0.1
"""Seconds between tries of a claim that nothing answered (a new replicated bucket electing)."""


class IdClaims:
    """The claims of one stream's message ids; the bucket is made on first use."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.bucket = f"{log.stream.name}_ids"
        self._kv: KeyValue | None = None
        self._opening = asyncio.Lock()

    async def claim(self, message_id: str, tenant_id: str, thread_id: str) -> str | None:
        """Claim ``message_id`` for the thread; None if granted, else the owner's subject.

        A claim that nothing answers is tried again within the write timeout: a claim is
        idempotent, and a replicated bucket just made (or one whose leader moved) answers
        nothing until its group has elected a leader.
        """
        deadline = time.monotonic() + self._log.write_timeout
        while True:
            try:
                return await self._claim_once(message_id, tenant_id, thread_id)
            except UnavailableError:
                if time.monotonic() + _PAUSE >= deadline:
                    raise
                await asyncio.sleep(_PAUSE)

    async def _claim_once(self, message_id: str, tenant_id: str, thread_id: str) -> str | None:
        kv = await self._bucket()
        key = f"m.{encode_token(message_id)}"
        owner = self._log.subjects.thread(tenant_id, thread_id)
        with self._log.nats_errors.translating(f"claim message id {message_id!r}"):
            try:
                await kv.create(key, owner.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                entry = await kv.get(key)
                held = (entry.value or b"").decode()
                return None if held == owner else held
        return None

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
                return await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                return await js.create_key_value(
                    api.KeyValueConfig(
                        bucket=self.bucket,
                        history=_HISTORY,
                        storage=api.StorageType.FILE,
                        replicas=self._log.replicas,
                    )
                )
