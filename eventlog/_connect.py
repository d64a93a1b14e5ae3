"""Opening the NATS connection: fail fast and say why, and never leave a client behind.

The client reconnects forever once connected (a server restart must not kill a store),
and nats-py applies that to the first connect too; so a wrong URL, a port where something
other than NATS listens, or refused credentials are found out here, each with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from nats.aio.client import Client

from eventlog.errors import PermissionDeniedError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventlog.connection import ConnectionState
    from eventlog.options import ConnectOptions

__all__ = ["open_client", "probe"]


async def open_client(
    urls: Sequence[str], url: str, options: ConnectOptions, connection: ConnectionState
) -> Client:
    """Connect; refused credentials fail at once (the client would retry them until timeout)."""
    nc = Client()
    connecting = asyncio.ensure_future(
        nc.connect(
            list(urls),
            name=options.name,
            connect_timeout=max(1, int(options.connect_timeout)),
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,  # type: ignore[arg-type] # typed int, used as seconds
            user=options.user,
            password=options.password,
            token=options.token,
            nkeys_seed=options.nkeys_seed,
            user_credentials=options.creds_file,
            tls=options.ssl_context(),
            inbox_prefix=options.inbox_prefix,
            error_cb=connection.on_error,
            disconnected_cb=connection.on_disconnected,
            reconnected_cb=connection.on_reconnected,
        )
    )
    refused = asyncio.ensure_future(connection.wait_refused())
    try:
        done, _ = await asyncio.wait(
            (connecting, refused),
            timeout=options.connect_timeout * 2,
            return_when=asyncio.FIRST_COMPLETED,
        )
    except BaseException:  # cancelled: the connect must not go on and connect behind us
        connecting.cancel()
        await nc.close()
        raise
    finally:
        refused.cancel()
    if connecting in done and connecting.exception() is None:
        return nc
    connecting.cancel()
    await nc.close()
    if refused in done:
        raise PermissionDeniedError(f"the server at {url} refused these credentials")
    failure = connecting.exception() if connecting in done else None
    raise UnavailableError(url, f"cannot connect ({failure or 'timed out'!r})") from failure


async def probe(urls: Sequence[str], url: str, seconds: float) -> None:
    """Fail fast, with the reason, unless some server accepts TCP and greets as NATS does."""
    reasons = []
    for candidate in urls:
        parts = urlsplit(candidate if "://" in candidate else f"nats://{candidate}")
        host, port = parts.hostname or "localhost", parts.port or 4222
        reason = await _knock(host, port, seconds, greets=parts.scheme in _GREETING_SCHEMES)
        if reason is None:
            return
        reasons.append(f"{host}:{port} {reason}")
    raise UnavailableError(
        url, "no NATS server answers (" + "; ".join(reasons) + "); check the URL and port"
    )


_GREETING_SCHEMES: Final = frozenset({"nats", "tls"})
"""URL schemes whose server speaks first, with INFO (a websocket waits for the client)."""
_GREETING: Final = b"INFO"


async def _knock(host: str, port: int, seconds: float, *, greets: bool) -> str | None:
    """Why ``host:port`` is no NATS server, or None: it accepts TCP (and sends INFO first)."""
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(host, port)
    except OSError as err:  # TimeoutError is an OSError too
        return f"cannot be reached: {err.strerror or 'timed out'}"
    try:
        if greets:
            async with asyncio.timeout_at(deadline):
                first = await reader.readexactly(len(_GREETING))
            if first != _GREETING:
                return f"did not answer as a NATS server (it sent {first!r})"
    except TimeoutError:
        return f"did not answer as a NATS server (it sent nothing within {seconds} s)"
    except (asyncio.IncompleteReadError, OSError):
        return "did not answer as a NATS server (it closed the connection)"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return None
