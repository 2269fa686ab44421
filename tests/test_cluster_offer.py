"""What a cluster's front end offers, in-process against the session's real redis-server: the
languages and profiles every live worker host registered, what the last live hosts read while
none is alive, and UNAVAILABLE before any host ever joined (backends/redis/offer.py).
The same through real processes and real recognition: tests/test_cluster.py."""

from __future__ import annotations

import secrets

import pytest

from ocr_server.backends.redis.hosts import HostInfo, HostRegistry
from ocr_server.backends.redis.keys import Keys
from ocr_server.backends.redis.offer import ClusterOffer
from ocr_server.engines.profiles import BUILTIN_PROFILES
from ocr_server.errors import InvalidSettingsError, NoWorkerHostError
from ocr_server.languages.routing import Reader
from tests.redis_server import RedisServer, need_redis

LATIN = frozenset({"en", "de"})
FAST = Reader("fast", "paddleocr", LATIN, LATIN)
TESSERACT_RU_KO = Reader("tesseract", "tesseract", frozenset({"ru", "ko"}), frozenset({"ru", "ko"}))
TESSERACT_RU = Reader("tesseract", "tesseract", frozenset({"ru"}), frozenset({"ru"}))
CUSTOM = Reader("cyrillic-server", "paddleocr", frozenset({"uk"}), frozenset({"uk"}))


def test_the_offer_follows_the_live_hosts_and_outlives_them(
    redis_server: RedisServer | None,
) -> None:
    need_redis()
    assert redis_server is not None
    prefix = f"offer{secrets.token_hex(4)}"
    registry = HostRegistry(redis_server.client(), Keys(prefix))

    def front_end() -> ClusterOffer:
        return ClusterOffer(registry, BUILTIN_PROFILES, "fast", prefix)

    def resolve(offer: ClusterOffer, language: str) -> str:
        return offer.current().resolve(language, "", "", 0).profile

    offer = front_end()
    with pytest.raises(NoWorkerHostError, match=f"no worker host has joined.*{prefix}"):
        resolve(offer, "en")
    assert offer.current().languages == ()

    registry.register(HostInfo("a", 1, (FAST, TESSERACT_RU_KO, CUSTOM)), ttl=30)
    registry.register(HostInfo("b", 0, (TESSERACT_RU, FAST, CUSTOM)), ttl=30)  # still loading
    offer.follow(registry.live())
    offered = offer.current()
    assert offered.languages == ("en", "de", "ru")  # ko: host b has no Korean data
    assert offered.installed_profiles == ("fast", "tesseract")  # no definition of the custom
    assert (resolve(offer, "ru"), resolve(offer, "de")) == ("tesseract", "fast")
    with pytest.raises(InvalidSettingsError, match=r"'ko' .* live worker hosts; installed: en"):
        resolve(offer, "ko")
    with pytest.raises(InvalidSettingsError, match="'accurate' is not installed on the live"):
        offered.resolve("en", "accurate", "", 0)

    registry.unregister("b")
    offer.follow(registry.live())
    assert "ko" in offer.current().languages
    registry.unregister("a")
    offer.follow(registry.live())  # none alive: what the last live host read
    assert resolve(offer, "ko") == "tesseract"
    assert resolve(front_end(), "ko") == "tesseract"  # a front end started meanwhile agrees
