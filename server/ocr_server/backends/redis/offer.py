"""What a cluster's front end offers: the languages and profiles that every live worker host
reads, from the readers the hosts register (their installed profiles, the languages each
recogniser's dictionary holds, their Tesseract data). The front end has no models of its own.

Every live host, not any: a page goes to whichever host asks for work first, so a language
that only some hosts read would fail on the others. A front end therefore accepts only what
all of them read, and says which languages it leaves out when hosts differ.

With no host alive the front end keeps accepting what the hosts last seen alive read (kept in
Redis, so a front end started meanwhile agrees with the others): tasks wait in the queue until
a host comes back, as they would behind busy hosts, and health says NOT_SERVING. Only a
cluster that no host has ever joined refuses Submit, with UNAVAILABLE (it cannot know what
will be read).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ocr_server.backends.redis.hosts import HostInfo, HostRegistry
from ocr_server.capabilities import Capabilities
from ocr_server.engines.profiles import Profile
from ocr_server.languages.routing import LanguageRouter, Reader, common_readers

log = logging.getLogger(__name__)

WHERE = "on the live worker hosts"
NO_HOST_YET = (
    "no worker host has joined this cluster yet (none has registered in Redis under prefix "
    "{prefix!r}), so nothing can be read; start ocr-worker hosts and submit again"
)


class ClusterOffer:
    """The front end's current capabilities, followed from the worker host registry."""

    def __init__(
        self,
        registry: HostRegistry,
        profiles: dict[str, Profile],
        default_profile: str,
        prefix: str,
    ) -> None:
        self._registry = registry
        self._profiles = profiles
        self._default = default_profile
        self._no_host = NO_HOST_YET.format(prefix=prefix)
        self._remembered: tuple[Reader, ...] | None = registry.last_offer()
        self._current = self._capabilities(self._remembered)
        self._unknown_logged: frozenset[str] = frozenset()

    def current(self) -> Capabilities:
        return self._current

    def follow(self, hosts: Sequence[HostInfo]) -> None:
        """Take the live hosts' readers (read from the registry by the caller); without any
        live host keep what was offered last. Redis errors propagate (the caller retries)."""
        if not hosts:
            if self._remembered is None:  # another front end may have seen hosts since
                self._remembered = self._registry.last_offer()
                self._current = self._capabilities(self._remembered)
            return
        readers = common_readers([host.readers for host in hosts])
        if readers != self._remembered:
            self._registry.remember_offer(readers)
            self._log_change(hosts, readers)
            self._remembered = readers
            self._current = self._capabilities(readers)

    def _capabilities(self, readers: tuple[Reader, ...] | None) -> Capabilities:
        if readers is None:
            router = LanguageRouter((), self._default, WHERE)
            return Capabilities(self._profiles, (), self._default, router, self._no_host)
        return Capabilities.from_readers(self._profiles, readers, self._default, WHERE)

    def _log_change(self, hosts: Sequence[HostInfo], readers: tuple[Reader, ...]) -> None:
        offered = Capabilities.from_readers(self._profiles, readers, self._default, WHERE)
        log.info(
            "offering what %d live worker hosts read: profiles %s; languages %s",
            len(hosts),
            ", ".join(offered.installed_profiles) or "none",
            ", ".join(offered.languages) or "none",
        )
        everyone = LanguageRouter([r for host in hosts for r in host.readers], self._default)
        left_out = [code for code in everyone.installed() if code not in offered.languages]
        if left_out:
            log.warning(
                "not offered: %s, read by some worker hosts but not all (a page may run on "
                "any host); install the same models and Tesseract data on every host",
                ", ".join(left_out),
            )
        unknown = frozenset(r.profile for r in readers if r.profile not in self._profiles)
        if unknown and unknown != self._unknown_logged:
            log.warning(
                "worker hosts have profiles this front end does not define, so it does not "
                "offer them: %s; give every front end the hosts' --profiles-file",
                ", ".join(sorted(unknown)),
            )
        self._unknown_logged = unknown
