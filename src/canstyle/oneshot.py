"""The one caching policy of the one-shot functions ``stylize``, ``upscale`` and ``generate``.

Each keeps the model of its most recent call, so a loop over images loads the weights once;
a call with other settings replaces it. At most one model per function stays in memory, never
a growing cache. Code that juggles several models builds ``StyleTransfer``, ``Upscaler`` or
``CanGenerator`` objects itself (or a ``Pipeline`` from them) and owns their lifetime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_LAST: dict[str, tuple[Hashable, Any]] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCK = threading.Lock()  # guards _LOCKS only


def reuse(kind: str, key: Hashable, build: Callable[[], T]) -> T:
    """The model ``build()`` made for ``key`` on the last call of ``kind``, or a new one.

    One lock per kind: loading VGG for ``stylize`` does not hold up a cached ``upscale``.
    """
    with _LOCK:
        lock = _LOCKS.setdefault(kind, threading.Lock())
    with lock:
        last = _LAST.get(kind)
        if last is not None and last[0] == key:
            return last[1]  # type: ignore[no-any-return]
        _LAST.pop(kind, None)  # free the old model before loading the next
        model = build()
        _LAST[kind] = (key, model)
        return model


def forget() -> None:
    """Drop every kept model (tests; or to free memory)."""
    for kind in list(_LAST):
        with _LOCKS.get(kind, _LOCK):
            _LAST.pop(kind, None)
