"""ConnectOptions from the nats CLI's environment variables and context files, and layering."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING

import pytest
import trustme

from eventlog import ConnectOptions, EventLog, ValidationError, tls_context

if TYPE_CHECKING:
    from pathlib import Path


def test_from_env_reads_the_nats_cli_variables() -> None:
    environ = {
        "NATS_URL": "nats://a:4222, nats://b:4222",
        "NATS_CREDS": "/creds/user.creds",
        "NATS_USER": "alice",
        "NATS_PASSWORD": "s3cret",
        "NATS_NKEY": "/keys/user.nk",
        "NATS_CERT": "/tls/client.pem",
        "NATS_KEY": "/tls/client.key",
        "NATS_CA": "/tls/ca.pem",
    }
    assert ConnectOptions.from_env(environ) == ConnectOptions(
        servers=("nats://a:4222", "nats://b:4222"),
        creds_file="/creds/user.creds",
        user="alice",
        password="s3cret",  # noqa: S106
        nkeys_seed="/keys/user.nk",
        tls_cert="/tls/client.pem",
        tls_key="/tls/client.key",
        tls_ca="/tls/ca.pem",
    )


def test_from_env_leaves_unset_variables_at_their_defaults() -> None:
    assert ConnectOptions.from_env({"NATS_USER": "", "HOME": "/home/x"}) == ConnectOptions()
    assert ConnectOptions.from_env({"NATS_URL": "nats://a"}).servers == ("nats://a",)


def _save(config: Path, name: str, context: object) -> None:
    folder = config / "nats" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(context), encoding="utf-8")


def _cli_context(**values: str) -> dict[str, object]:
    """A context as ``nats context save`` writes it: every key, "" when unset."""
    keys = ("url", "user", "password", "token", "creds", "nkey", "cert", "key", "ca")
    return (
        {"description": "", "tls_first": False, "inbox_prefix": ""}
        | dict.fromkeys(keys, "")
        | values
    )


def test_from_context_reads_a_named_context(tmp_path: Path) -> None:
    _save(
        tmp_path,
        "prod",
        _cli_context(
            url="nats://p1:4222,nats://p2:4222",
            user="ops",
            password="pw",  # noqa: S106
            creds="/c.creds",
            nkey="/n.nk",
            cert="/c.pem",
            key="/c.key",
            ca="/ca.pem",
            inbox_prefix="_INBOX_acme",
        ),
    )
    options = ConnectOptions.from_context("prod", environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert options == ConnectOptions(
        servers=("nats://p1:4222", "nats://p2:4222"),
        user="ops",
        password="pw",  # noqa: S106
        creds_file="/c.creds",
        nkeys_seed="/n.nk",
        tls_cert="/c.pem",
        tls_key="/c.key",
        tls_ca="/ca.pem",
        inbox_prefix="_INBOX_acme",
    )


def test_from_context_takes_nats_context_then_the_selected_one(tmp_path: Path) -> None:
    _save(tmp_path, "chosen", _cli_context(url="nats://chosen"))
    _save(tmp_path, "selected", _cli_context(url="nats://selected", token="t"))  # noqa: S106
    (tmp_path / "nats" / "context.txt").write_text("selected\n", encoding="utf-8")
    home = {"XDG_CONFIG_HOME": str(tmp_path)}
    by_variable = ConnectOptions.from_context(environ=home | {"NATS_CONTEXT": "chosen"})
    assert by_variable.servers == ("nats://chosen",)
    selected = ConnectOptions.from_context(environ=home)
    assert (selected.servers, selected.token) == (("nats://selected",), "t")


def test_from_context_without_one_selected_gives_the_defaults(tmp_path: Path) -> None:
    assert ConnectOptions.from_context(environ={"XDG_CONFIG_HOME": str(tmp_path)}) == (
        ConnectOptions()
    )


def test_from_context_defaults_to_dot_config_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _save(tmp_path / ".config", "home", _cli_context(user="homer"))
    assert ConnectOptions.from_context("home", environ={}).user == "homer"


def test_a_missing_or_broken_context_names_its_file(tmp_path: Path) -> None:
    home = {"XDG_CONFIG_HOME": str(tmp_path)}
    missing = tmp_path / "nats" / "context" / "nope.json"
    with pytest.raises(
        ValidationError,
        match=f"^nats context 'nope' does not exist \\({re.escape(str(missing))}\\)",
    ):
        ConnectOptions.from_context("nope", environ=home)
    _save(tmp_path, "broken", {})
    broken = tmp_path / "nats" / "context" / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(
        ValidationError,
        match=f"^nats context 'broken' in {re.escape(str(broken))} is not a valid context",
    ):
        ConnectOptions.from_context("broken", environ=home)
    _save(tmp_path, "typed", {"url": 4222})
    with pytest.raises(ValidationError, match=r"^nats context 'typed' in .*typed\.json"):
        ConnectOptions.from_context("typed", environ=home)
    with pytest.raises(ValidationError, match="must not be a path"):
        ConnectOptions.from_context("../escape", environ=home)


def test_overriding_keeps_what_each_layer_sets() -> None:
    """Flags over environment over context: a field set above wins, the rest come from below.

    A way to sign in above drops the other ways below (the token), keeps its own fields
    from below (the user); a client certificate comes with its key from one layer.
    """
    context = ConnectOptions(
        servers=("nats://ctx",),
        token="ctx-token",  # noqa: S106
        tls_ca="ctx-ca.pem",
        inbox_prefix="_CTX",
    )
    context = dataclasses.replace(context, user="ctx", tls_key="ctx.key")
    environ = ConnectOptions(password="env-pw", tls_cert="env.pem")  # noqa: S106
    flags = ConnectOptions(write_timeout=9.0, servers=("nats://flag",))
    assert flags.overriding(environ.overriding(context)) == ConnectOptions(
        servers=("nats://flag",),
        user="ctx",
        password="env-pw",  # noqa: S106
        tls_ca="ctx-ca.pem",
        tls_cert="env.pem",
        inbox_prefix="_CTX",
        write_timeout=9.0,
    )
    assert ConnectOptions().overriding(context) == context


def test_a_deleted_selected_context_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """context.txt naming a context whose file is gone: a warning and the defaults, no error."""
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "context.txt").write_text("gone\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="eventlog.options"):
        assert ConnectOptions.from_context(environ={"XDG_CONFIG_HOME": str(tmp_path)}) == (
            ConnectOptions()
        )
    assert "the selected nats context 'gone' has no file" in caplog.text
    with pytest.raises(ValidationError, match=r"^nats context 'gone' does not exist"):
        ConnectOptions.from_context(
            environ={"XDG_CONFIG_HOME": str(tmp_path), "NATS_CONTEXT": "gone"}
        )


async def test_connect_takes_the_servers_of_its_options(nats_url: str) -> None:
    """EventLog.connect without servers uses options.servers (NATS_URL through from_env)."""
    options = ConnectOptions.from_env({"NATS_URL": nats_url})
    log = await EventLog.connect(options=options)
    try:
        assert log.is_connected
    finally:
        await log.close()
    with pytest.raises(ValidationError, match=r"^no NATS server to connect to"):
        await EventLog.connect()


def test_tls_paths_build_the_tls_context(tmp_path: Path) -> None:
    """tls_ca (and a client pair) build the context when none is given; a given one wins."""
    authority = trustme.CA()
    client = authority.issue_cert("convlog-client")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    authority.cert_pem.write_to_path(str(ca))
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    assert ConnectOptions().ssl_context() is None
    built = ConnectOptions(tls_ca=str(ca), tls_cert=str(cert), tls_key=str(key)).ssl_context()
    assert built is not None
    assert len(built.get_ca_certs()) == 1  # the CA given, and only it
    given = tls_context(ca)
    assert ConnectOptions(tls=given, tls_ca="/nowhere.pem").ssl_context() is given
