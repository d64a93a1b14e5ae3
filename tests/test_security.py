"""Security: per-tenant credentials confine a store to its tenant, enforced by the server; TLS."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import trustme

from eventlog import (
    ConnectOptions,
    ConvlogError,
    EmbeddedNats,
    EventLog,
    Message,
    NotFoundError,
    PermissionDeniedError,
    TenantPermissions,
    Thread,
    ThreadCreated,
    tls_context,
)
from eventlog.events import new_event_id
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TENANTS = ("acme", "globex")


def _user(name: str, permissions: str = "") -> str:
    return f'{{ user: "{name}", password: "{name}-secret"\n{permissions} }}'


def _signed_in(user: str, secret: str | None = None) -> ConnectOptions:
    """``user``'s options: the admin's, or a tenant's with its own inbox prefix."""
    inbox = "_INBOX" if user == "admin" else TenantPermissions.for_tenant(user).inbox_prefix
    return ConnectOptions(
        user=user,
        password=secret or f"{user}-secret",
        inbox_prefix=inbox,
        write_timeout=1.0,
    )


@pytest.fixture
async def authorized_server(tmp_path: Path) -> AsyncIterator[str]:
    """A server where "admin" may do anything and each tenant only its own events."""
    users = [_user("admin")] + [
        _user(tenant, TenantPermissions.for_tenant(tenant).server_config()) for tenant in TENANTS
    ]
    config = "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}"
    async with EmbeddedNats(data_dir=tmp_path, extra_config=config) as url:
        admin = await EventLog.connect(url, options=_signed_in("admin"))
        await admin.close()  # the operator creates the stream; tenants may not
        yield url


async def _tenant_store(url: str, tenant_id: str) -> JetStreamMessageStore:
    return await JetStreamMessageStore.connect(
        url, tenant_id=tenant_id, options=_signed_in(tenant_id)
    )


async def test_a_tenant_store_sees_and_writes_only_its_own_tenant(authorized_server: str) -> None:
    acme = await _tenant_store(authorized_server, "acme")
    globex = await _tenant_store(authorized_server, "globex")
    try:
        ours = Thread.new("acme", "alice")
        await acme.create_thread(ours)
        said = Message.user(ours.id, "acme's secret plan")
        await acme.create_message(said)
        theirs = Thread.new("globex", "bob")
        await globex.create_thread(theirs)
        await globex.create_message(Message.user(theirs.id, "globex's secret plan"))

        assert [m.content for m in await acme.list_messages(ours.id)] == ["acme's secret plan"]
        assert await acme.get_thread(theirs.id) is None
        assert await acme.list_threads("globex", "bob", 10, 0) == []
        assert await globex.get_message(said.id) is None
        with pytest.raises(PermissionDeniedError, match="confined to tenant 'acme'"):
            await acme.create_thread(Thread.new("globex", "mallory"))
        with pytest.raises(NotFoundError):
            await acme.create_message(Message.user(theirs.id, "planted by acme"))

        # A tenant's store catches up with its tenant's writes made elsewhere: at start,
        # and when it is asked to change what another store has just written.
        again = await _tenant_store(authorized_server, "acme")
        assert [m.id for m in await again.list_messages(ours.id)] == [said.id]
        assert (await again.health_check()).status == "ok"
        fresh = Message.user(ours.id, "written by the first acme store")
        await acme.create_message(fresh)
        await again.update_message(fresh.model_copy(update={"content": "edited by the second"}))
        edited = await again.get_message(fresh.id)
        assert edited is not None
        assert edited.content == "edited by the second"
        await again.close()
    finally:
        await acme.close()
        await globex.close()


async def test_a_tenant_store_follows_again_when_its_consumer_cannot_be_recreated(
    authorized_server: str,
) -> None:
    """After a gap nats-py re-creates the consumer unnamed, which a tenant may not do."""
    reader = await _tenant_store(authorized_server, "acme")
    writer = await _tenant_store(authorized_server, "acme")
    try:
        thread = Thread.new("acme", "alice")
        await writer.create_thread(thread)
        await asyncio.wait_for(reader.wait_for(writer.sequence), 5)
        # What nats-py does when it sees a gap in the consumer's sequence numbers:
        jsi = reader._worker._follower._subscription._sub._jsi  # type: ignore[union-attr]
        await jsi.reset_ordered_consumer(reader.sequence + 1)
        message = Message.user(thread.id, "written after the reset")
        await writer.create_message(message)
        await asyncio.wait_for(reader.wait_for(writer.sequence), 10)
        assert await reader.get_message(message.id) == message
    finally:
        await reader.close()
        await writer.close()


async def test_the_server_refuses_another_tenants_subjects(authorized_server: str) -> None:
    """Without the store's own checks, the server itself keeps acme out of globex's events."""
    admin = await JetStreamMessageStore.connect(authorized_server, options=_signed_in("admin"))
    theirs = Thread.new("globex", "bob")
    await admin.create_thread(theirs)
    await admin.close()

    log = await EventLog.connect(authorized_server, options=_signed_in("acme"))
    try:
        planted = ThreadCreated(
            event_id=new_event_id(),
            occurred_at=theirs.created_at,
            tenant_id=theirs.tenant_id,
            thread_id=Thread.new("globex", "mallory").id,
            thread=Thread.new("globex", "mallory"),
        )
        with pytest.raises(PermissionDeniedError, match="may not publish"):
            await log.append(planted)
        subject = log.subjects.thread("globex", theirs.id)
        with pytest.raises(PermissionDeniedError, match="may not read"):
            await log.last_on_subject(subject)
        with pytest.raises(PermissionDeniedError, match="create an ordered consumer"):
            await anext(log.read(subject=log.subjects.tenant("globex")))
        with pytest.raises(PermissionDeniedError, match="create a consumer"):
            async with log.subscribe(tenant_id="globex", start="beginning", follow=False):
                pass
    finally:
        await log.close()

    admin_log = await EventLog.connect(authorized_server, options=_signed_in("admin"))
    stored = [admin_log.codec.decode(r.data) async for r in admin_log.read()]
    await admin_log.close()
    assert [event.thread_id for event in stored] == [theirs.id]  # nothing planted


async def test_wrong_credentials_are_refused_clearly(authorized_server: str) -> None:
    with pytest.raises(PermissionDeniedError, match="refused these credentials"):
        await EventLog.connect(authorized_server, options=_signed_in("acme", "guess"))


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1")
    client_cert = authority.issue_cert("convlog-client")
    files = {}
    for name, blob in {
        "ca.pem": authority.cert_pem,
        "server.pem": server_cert.cert_chain_pems[0],
        "server.key": server_cert.private_key_pem,
        "client.pem": client_cert.cert_chain_pems[0],
        "client.key": client_cert.private_key_pem,
    }.items():
        blob.write_to_path(str(tmp_path / name))
        files[name] = tmp_path / name
    tls = (
        f'tls {{\n  cert_file: "{files["server.pem"]}"\n  key_file: "{files["server.key"]}"\n'
        f'  ca_file: "{files["ca.pem"]}"\n  verify: true\n}}'
    )
    async with EmbeddedNats(data_dir=tmp_path / "server", extra_config=tls) as url:
        secure = url.replace("nats://", "tls://")
        options = ConnectOptions(
            tls=tls_context(files["ca.pem"], files["client.pem"], files["client.key"])
        )
        store = await JetStreamMessageStore.connect(secure, options=options)
        async with store:
            thread = Thread.new("acme", "alice")
            await store.create_thread(thread)
            assert await store.get_thread(thread.id) == thread
        without_certificate = ConnectOptions(tls=tls_context(files["ca.pem"]), connect_timeout=1)
        with pytest.raises(ConvlogError):  # the server verifies clients: it hangs up
            await EventLog.connect(secure, options=without_certificate)
