"""A small thread-safe LRU cache of loaded models; each loads once, off the event loop.

Callers (executors, running in the worker's thread pool) ask for a model by key with a
loader; concurrent requests for the same key wait for one load (and share its result or
its error) instead of loading twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ModelCache:
    """LRU cache of at most ``size`` models, keyed by a string such as ``"embed:<path>"``."""

    def __init__(self, size: int, on_load: Callable[[str, float], None] | None = None) -> None:
        self.size = size
        self._on_load = on_load
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, Future[Any]] = {}
        self.load_seconds: dict[str, float] = {}

    def get(self, key: str, loader: Callable[[], T]) -> T:
        """The model under ``key``, loading it with ``loader`` on first use.

        Callers that ask while a load of ``key`` is in flight wait for that load and get
        its model, or its error: one load, however many ask and whatever is evicted
        meanwhile.
        """
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
            pending = self._loading.get(key)
            owner = pending is None
            if pending is None:
                pending = self._loading[key] = Future()
        if not owner:
            return pending.result()  # type: ignore[no-any-return]
        start = time.perf_counter()
        logger.info("loading model %s", key)
        try:
            value = loader()
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
            pending.set_exception(exc)
            raise
        seconds = time.perf_counter() - start
        logger.info("loaded model %s in %.2fs", key, seconds)
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self.load_seconds[key] = seconds
            while len(self._items) > self.size:
                evicted, _ = self._items.popitem(last=False)
                self.load_seconds.pop(evicted, None)
                logger.info("evicted model %s from the cache", evicted)
            self._loading.pop(key, None)
        pending.set_result(value)
        if self._on_load is not None:
            self._on_load(key, seconds)
        return value

    def peek(self, key: str) -> Any | None:
        """The model under ``key`` if it is loaded (marks it recently used), else None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: str, value: Any) -> None:
        """Insert ``value`` under ``key`` (evicting the least recently used if full)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def loaded(self) -> list[str]:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return list(self._items)
