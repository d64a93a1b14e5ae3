"""A bounded cache of read models: what keeps warm reads fast without keeping every model.

The views hold each thread and message as msgspec data and make its pydantic model when a
query asks (see :mod:`projections.views`). Keeping every model made would let a process's
memory grow with every message it ever read (measured at 1,000,000 messages: from 628 B a
message beyond its text as folded to 1,909 B once each was read). This cache keeps the
models read most recently, at most ``limit`` of them.

It is two generations of plain dicts rather than an LRU list: a model goes into the young
generation when made, or when read from the old one; once the young one holds half the
limit it becomes the old one, and the old one is dropped whole. A warm read is one dict
lookup, where an ``OrderedDict`` LRU takes two (``get`` then ``move_to_end``); measured on
this project's machine, a hit cost 230-300 ns against 370-730 ns for the ``OrderedDict``,
a miss with its insertion 0.9-1.1 µs against 1.4-2.1 µs, and an entry 19-47 B against
151 B. A plain dict reordered by pop and insert is no alternative: evicting its first
entry scans the deleted ones before it (85-128 µs a miss). The price is that the models of
a dropped generation are freed together, ~0.9 µs each: about 23 ms once every
``limit / 2`` misses at the default limit, against the 8-20 µs each of those misses took
to make its model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from eventlog import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["ModelCache"]

Model = TypeVar("Model")


class ModelCache(Generic[Model]):
    """At most ``limit`` models by id, those read least recently dropped first (roughly).

    A model read in the last ``limit / 2`` insertions is always kept; one read before that
    is kept until its generation is dropped. Callers :meth:`drop` a model whenever what it
    was made from changes, so a read never returns a stale one.
    """

    __slots__ = ("_half", "_old", "_young")

    def __init__(self, limit: int) -> None:
        self._half = limit // 2
        if self._half < 1:
            raise ValidationError(f"a model cache holds at least 2 models, not {limit}")
        self._young: dict[str, Model] = {}
        self._old: dict[str, Model] = {}

    def __len__(self) -> int:
        """Models held now: never more than the limit."""
        return len(self._young) + len(self._old)

    def get(self, key: str) -> Model | None:
        """The model cached for ``key``, or None; a hit in the old generation moves it young."""
        model = self._young.get(key)
        if model is None:
            model = self._old.pop(key, None)
            if model is not None:
                self.put(key, model)
        return model

    def get_many(self, keys: Iterable[str], make: Callable[[str], Model]) -> list[Model]:
        """The models of ``keys`` in order; one not cached is made by ``make`` and cached.

        A key the young generation holds costs one dict lookup and no call: the path of
        every warm read of a page.
        """
        return [
            model if (model := self._young.get(key)) is not None else self._made(key, make)
            for key in keys
        ]

    def _made(self, key: str, make: Callable[[str], Model]) -> Model:
        """The model of a key the young generation lacks: from the old one, or made."""
        model = self.get(key)
        if model is None:
            model = make(key)
            self.put(key, model)
        return model

    def put(self, key: str, model: Model) -> None:
        """Cache ``model`` for ``key``, which must not be cached already (see :meth:`get`)."""
        young = self._young
        young[key] = model
        if len(young) >= self._half:
            self._old = young
            self._young = {}

    def drop(self, key: str) -> None:
        """Forget the model of ``key``, if cached: what it was made from has changed."""
        self._young.pop(key, None)
        self._old.pop(key, None)
