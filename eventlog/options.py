"""ConnectOptions: how to reach and sign in to NATS, from code, the environment or a context.

The environment variables and context files are the nats CLI's own, so a machine set up
for ``nats`` is set up for convlog. Each source sets only what it names; combine them with
:meth:`ConnectOptions.overriding` (the CLI: flags, then environment, then context).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import msgspec

from eventlog.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from os import PathLike

__all__ = ["ConnectOptions", "tls_context"]

logger = logging.getLogger(__name__)

_SIGN_INS: tuple[frozenset[str], ...] = (
    frozenset({"user", "password"}),
    frozenset({"token"}),
    frozenset({"nkeys_seed"}),
    frozenset({"creds_file"}),
)
"""The ways to sign in: a source that uses one drops the others of the sources below."""
_TLS_PATHS = frozenset({"tls_ca", "tls_cert", "tls_key"})
_CLIENT_PAIR = frozenset({"tls_cert", "tls_key"})


def tls_context(
    ca_file: str | PathLike[str] | None,
    cert_file: str | PathLike[str] | None = None,
    key_file: str | PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A client TLS context for :class:`ConnectOptions`.

    It trusts ``ca_file`` (the system's CAs when None) and presents ``cert_file``/``key_file``
    when the server verifies clients (``verify: true`` in its ``tls`` block).
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectOptions:
    """Servers, credentials and timeouts for the NATS connection."""

    servers: tuple[str, ...] = ()
    """Server URLs, as NATS_URL or a context give them; :meth:`EventLog.connect` takes its own."""
    connect_timeout: float = 5.0
    write_timeout: float = 5.0
    """An append that gets no ack within this many seconds raises UnavailableError."""
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    """The path of an nkey seed file."""
    creds_file: str | None = None
    tls: ssl.SSLContext | None = None
    """CA, and client certificate and key when the server verifies them (``tls_context``)."""
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    """Paths to build the TLS context from, when ``tls`` is not given."""
    inbox_prefix: str = "_INBOX"
    """Where replies come back; give each tenant its own (e.g. ``_INBOX_acme``) so that its
    credentials can be allowed to subscribe there and nowhere else."""
    name: str = "convlog"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The options the nats CLI's variables set (NATS_URL, NATS_CREDS, ...); unset: defaults."""
        env = os.environ if environ is None else environ
        return cls._given(
            servers=_urls(env.get("NATS_URL", "")),
            creds_file=env.get("NATS_CREDS"),
            user=env.get("NATS_USER"),
            password=env.get("NATS_PASSWORD"),
            nkeys_seed=env.get("NATS_NKEY"),
            tls_cert=env.get("NATS_CERT"),
            tls_key=env.get("NATS_KEY"),
            tls_ca=env.get("NATS_CA"),
        )

    @classmethod
    def from_context(
        cls, name: str | None = None, *, environ: Mapping[str, str] | None = None
    ) -> Self:
        """The options of a nats CLI context: ``name``, else NATS_CONTEXT, else the selected one.

        Contexts live in ``$XDG_CONFIG_HOME/nats/context/<name>.json`` (``~/.config`` by
        default) and ``nats/context.txt`` names the selected one; with none, the defaults.
        """
        env = os.environ if environ is None else environ
        home = Path(env.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser()) / "nats"
        named = name or env.get("NATS_CONTEXT")
        name = named or _selected(home / "context.txt")
        if not name:
            return cls()
        if name in {".", ".."} or "/" in name or "\\" in name:
            raise ValidationError(f"context name {name!r} must not be a path")
        path = home / "context" / f"{name}.json"
        try:
            context = _CONTEXT.decode(path.read_bytes())
        except FileNotFoundError:
            if named:
                raise ValidationError(
                    f"nats context {name!r} does not exist ({path}); create it with "
                    "`nats context save`, or name another"
                ) from None
            # selected in context.txt but since deleted: the nats CLI's state, not our
            # caller's choice; say so and go on without it
            logger.warning("the selected nats context %r has no file %s; ignoring it", name, path)
            return cls()
        except OSError as err:
            raise ValidationError(
                f"nats context {name!r} cannot be read from {path} ({err.strerror}); "
                "create it with `nats context save`, or name another"
            ) from err
        except msgspec.DecodeError as err:
            raise ValidationError(
                f"nats context {name!r} in {path} is not a valid context ({err}); "
                "fix the file or save it again with `nats context save`"
            ) from err
        return cls._given(
            servers=_urls(context.url),
            user=context.user,
            password=context.password,
            token=context.token,
            creds_file=context.creds,
            nkeys_seed=context.nkey,
            tls_cert=context.cert,
            tls_key=context.key,
            tls_ca=context.ca,
            inbox_prefix=context.inbox_prefix,
        )

    @classmethod
    def _given(cls, **values: str | tuple[str, ...] | None) -> Self:
        """Options with the values given; empty or missing ones keep their defaults."""
        given: dict[str, Any] = {key: value for key, value in values.items() if value}
        return cls(**given)

    def overriding(self, base: ConnectOptions) -> ConnectOptions:
        """These options over ``base``: each field set here (not its default) wins.

        A way to sign in set here drops ``base``'s other ways (a user and password here never
        travel with a creds file below, but a password here does go with the user below); a
        client certificate and its key come from one source; a ``tls`` context here drops
        the TLS paths below.
        """
        fields = dataclasses.fields(self)
        changed = {f.name for f in fields if getattr(self, f.name) != f.default}
        if changed & _CLIENT_PAIR:
            changed |= _CLIENT_PAIR
        values: dict[str, Any] = {name: getattr(self, name) for name in changed}
        if any(changed & way for way in _SIGN_INS):
            for way in _SIGN_INS:
                if not changed & way:
                    values.update(dict.fromkeys(way))
        if "tls" in changed:
            values.update(dict.fromkeys(_TLS_PATHS))
        return dataclasses.replace(base, **values)

    def ssl_context(self) -> ssl.SSLContext | None:
        """``tls``, else one built from the ``tls_*`` paths, else None (no TLS asked for)."""
        if self.tls is not None or not (self.tls_ca or self.tls_cert):
            return self.tls
        return tls_context(self.tls_ca, self.tls_cert, self.tls_key)


class _Context(msgspec.Struct):
    """The keys of a nats CLI context file convlog uses ("" is unset, as the CLI writes it)."""

    url: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    creds: str = ""
    nkey: str = ""
    cert: str = ""
    key: str = ""
    ca: str = ""
    inbox_prefix: str = ""


_CONTEXT = msgspec.json.Decoder(_Context)


def _urls(text: str) -> tuple[str, ...]:
    """Comma-separated server URLs, as NATS_URL and contexts hold them."""
    return tuple(url.strip() for url in text.split(",") if url.strip())


def _selected(path: Path) -> str:
    """The context ``nats context select`` chose, or "" when none was."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
