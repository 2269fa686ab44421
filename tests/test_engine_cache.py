"""A worker's engine cache: at most N engines, least recently used dropped, the default pinned."""

from __future__ import annotations

import pytest

from ocr_server.engines.base import Image, RecognizedLine
from ocr_server.engines.cache import EngineCache


class Stub:
    def __init__(self, name: str) -> None:
        self.name = name

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        return []


def make(max_engines: int) -> tuple[EngineCache, list[str]]:
    built: list[str] = []

    def build(key: str) -> Stub:
        built.append(key)
        return Stub(key)

    return EngineCache(build, "fast", max_engines), built


def test_loaded_once_and_reused() -> None:
    cache, built = make(2)
    first = cache.get("fast")
    assert cache.get("fast") is first
    assert built == ["fast"]


def test_least_recently_used_dropped_beyond_the_bound_never_the_pinned() -> None:
    cache, built = make(2)
    cache.get("fast")
    cache.get("accurate")
    cache.get("tiny")  # drops accurate: fast is pinned
    assert cache.loaded == ["fast", "tiny"]
    cache.get("accurate")  # reloaded, drops tiny
    assert built == ["fast", "accurate", "tiny", "accurate"]
    assert cache.loaded == ["fast", "accurate"]


def test_lru_order_among_unpinned() -> None:
    cache, _ = make(3)
    for key in ("fast", "accurate", "tiny", "accurate", "paddle"):
        cache.get(key)
    assert cache.loaded == ["fast", "accurate", "paddle"]  # tiny was least recently used


def test_bound_of_one_keeps_the_pinned_beside_the_one_in_use() -> None:
    cache, _ = make(1)
    cache.get("fast")
    cache.get("accurate")
    cache.get("tiny")
    assert cache.loaded == ["fast", "tiny"]


def test_bound_below_one_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        make(0)
