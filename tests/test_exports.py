"""The public API in two tiers: what users import from a package root, and the plumbing.

Each public module lists what it offers in ``__all__``. A package root re-exports only the
user tier pinned here, module by module; everything else (codecs, subjects, wire data, the
fold, the worker...) is imported from its module, so ``projections`` and the tests import
plumbing from where it lives and a new name reaches the root only by a decision made here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

USER_TIER: dict[str, dict[str, set[str]]] = {
    "eventlog": {
        "errors": {
            "AlreadyExistsError",
            "ConflictError",
            "ConvlogError",
            "DeletedError",
            "EmbeddedServerError",
            "Gap",
            "ImportRejectedError",
            "MalformedEventError",
            "MissingRecordsError",
            "NotFoundError",
            "PayloadTooLargeError",
            "PermissionDeniedError",
            "ProjectionError",
            "UnavailableError",
            "ValidationError",
        },
        "events": {
            "AnyEvent",
            "Event",
            "EventContext",
            "MessageCreated",
            "MessageDeleted",
            "MessageUpdated",
            "SCHEMA_VERSION",
            "StoredEvent",
            "ThreadCreated",
            "ThreadDeleted",
            "ThreadUpdated",
            "event_context",
        },
        "ids": {"ExecutionId", "MessageId", "TenantId", "ThreadId", "UserId"},
        "log": {"EventLog", "LogRecord"},
        "model": {
            "CodePart",
            "CostInfo",
            "ExecutionStats",
            "FilePart",
            "FinishReason",
            "ImagePart",
            "Message",
            "MessageMetadata",
            "MessagePart",
            "MessageRole",
            "ParentType",
            "ReasoningPart",
            "SourcePart",
            "TextPart",
            "Thread",
            "TokenUsage",
            "ToolCallPart",
            "ToolResultPart",
        },
        "options": {"ConnectOptions", "tls_context"},
        "security": {"TenantPermissions"},
        "server": {"DEFAULT_MAX_PAYLOAD", "EmbeddedNats"},
        "stream": {"StreamSettings"},
        "subscription": {"Delivery", "DurableSubscription", "Start", "Subscription"},
        "transfer": {
            "ExportReport",
            "ExportTrailer",
            "ExportedEvent",
            "ImportReport",
            "export_events",
            "import_events",
        },
        "upcast": {"UPCASTERS", "UpcastStep", "Upcasters"},
        "verify": {"ChainBreak", "VerifyReport", "verify_chains"},
    },
    "projections": {
        "audit": {"Audit", "AuditEntry", "ExecutionTrail", "ReadOnlyStore", "TrailSummary"},
        "commands": {"Clock", "utc_now"},
        "errors": {
            "EventRejectedError",
            "ReadOnlyError",
            "RebuildMismatchError",
            "SnapshotError",
            "SnapshotFormatError",
            "TransactionError",
        },
        "fold": {"SkippedEvent"},
        "health": {"Health"},
        "rebuild": {"Rebuilt", "rebuild"},
        "service": {"RemoteMessageStore", "ServiceSubjects"},
        "snapshot": {"SnapshotHealth", "SnapshotInfo", "SnapshotPolicy"},
        "store": {"InMemoryMessageStore", "JetStreamMessageStore", "MessageStore"},
        "transaction": {"Transaction"},
    },
}
"""For each package, the names its root exports, by the module that defines them."""


def _public_modules(package_name: str) -> list[str]:
    package = importlib.import_module(package_name)
    return [
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        # the CLI is a front end, testing needs pytest and the framework backends their
        # frameworks (optional extras): none is re-exported at the root
        if not info.name.startswith("_") and info.name not in {"cli", "testing", "frameworks"}
    ]


@pytest.mark.parametrize("package_name", ["eventlog", "projections"])
def test_the_root_exports_exactly_the_user_tier(package_name: str) -> None:
    """The root's __all__ is the pinned user tier, each name the very object of its module."""
    package = importlib.import_module(package_name)
    tier = USER_TIER[package_name]
    assert len(package.__all__) == len(set(package.__all__))
    assert set(package.__all__) == set().union(*tier.values())
    for module_name, names in tier.items():
        module = importlib.import_module(f"{package_name}.{module_name}")
        for name in names:
            assert name in module.__all__, f"{name} is not offered by {module.__name__}"
            assert getattr(package, name) is getattr(module, name)


@pytest.mark.parametrize("package_name", ["eventlog", "projections"])
def test_every_module_offers_what_it_lists(package_name: str) -> None:
    """Each public module's __all__ names things it has; no plumbing module is left unlisted."""
    for module_name in _public_modules(package_name):
        module = importlib.import_module(f"{package_name}.{module_name}")
        assert module.__all__, f"{module.__name__} lists nothing in __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.__all__ names a missing {name}"


def test_roots_are_imported_only_for_the_user_tier() -> None:
    """Code here imports from a package root only names of its user tier (plumbing by module)."""
    roots = {name: set().union(*tier.values()) for name, tier in USER_TIER.items()}
    for folder in ("eventlog", "projections", "tests", "benchmarks"):
        for path in Path(folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module in roots and not node.level:
                    unknown = {alias.name for alias in node.names} - roots[node.module]
                    assert not unknown, f"{path}:{node.lineno} imports {unknown} from the root"


def test_projections_never_imported_by_eventlog() -> None:
    """The write side stands alone: no eventlog module imports projections."""
    for module_info in pkgutil.iter_modules(importlib.import_module("eventlog").__path__):
        module = importlib.import_module(f"eventlog.{module_info.name}")
        source = module.__loader__.get_source(module.__name__)  # type: ignore[union-attr]
        assert "from projections" not in (source or "")
        assert "import projections" not in (source or "")
