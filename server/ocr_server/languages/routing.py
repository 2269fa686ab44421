"""Which installed profile reads a request's languages: pure rules over what was discovered.

A `Reader` is one installed profile seen from the languages' side: the languages it reads at
all (a PaddleOCR recogniser whose dictionary holds the language's letters; Tesseract with
the language's data installed) and those it reads well (measured, see
docs/languages.md, or declared for a custom profile). A request without a profile gets the
server's default profile when that reads every requested language well, else the first
profile that does (PaddleOCR profiles before Tesseract). A request that names a profile gets
it when it reads every language at all, and a clear refusal otherwise: a page of junk is
never the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocr_server.errors import InvalidSettingsError
from ocr_server.languages.catalog import BY_CODE, LANGUAGES


@dataclass(frozen=True)
class Reader:
    """One installed profile: which catalog languages it reads at all and which well."""

    profile: str
    engine: str  # "paddleocr" or "tesseract", as GetCapabilities shows it
    reads: frozenset[str]
    reads_well: frozenset[str]


@dataclass(frozen=True)
class Route:
    """How one language is read when a request names no profile."""

    language: str
    engine: str
    profile: str
    profiles: tuple[str, ...]  # every installed profile that reads it (the route's first)


class LanguageRouter:
    """Routes languages to profiles for one server's installed readers (or a cluster's)."""

    def __init__(
        self, readers: Sequence[Reader], default_profile: str, where: str = "on this server"
    ) -> None:
        """`where`: how refusals name the place that lacks a language ("on this server")."""
        # PaddleOCR first (faster, boxes per line), Tesseract for the scripts it lacks.
        self._readers = sorted(readers, key=lambda r: r.engine == "tesseract")
        self._default = default_profile
        self._by_profile = {reader.profile: reader for reader in self._readers}
        self.where = where

    @property
    def readers(self) -> tuple[Reader, ...]:
        return tuple(self._readers)

    def installed(self) -> tuple[str, ...]:
        """Catalog codes that some installed profile reads well, in catalog order."""
        return tuple(
            language.code
            for language in LANGUAGES
            if any(language.code in reader.reads_well for reader in self._readers)
        )

    def routes(self) -> tuple[Route, ...]:
        routes: list[Route] = []
        for code in self.installed():
            reader = self._choose((code,))
            assert reader is not None
            others = [r.profile for r in self._readers if code in r.reads and r is not reader]
            routes.append(Route(code, reader.engine, reader.profile, (reader.profile, *others)))
        return tuple(routes)

    def resolve(self, codes: tuple[str, ...], profile: str) -> str:
        """The profile that reads `codes` (catalog codes): `profile` if given and able, else
        the route. InvalidSettingsError says what is installed instead."""
        missing = [code for code in codes if code not in self.installed()]
        if missing:
            raise InvalidSettingsError(
                f"language {missing[0]!r} ({BY_CODE[missing[0]].name}) is not installed "
                f"{self.where}; installed: {', '.join(self.installed()) or 'none'}"
            )
        wanted = "+".join(codes)
        if profile:
            reader = self._by_profile.get(profile)
            if reader is None:  # a profile that is not installed: the caller explains
                return profile
            unread = [code for code in codes if code not in reader.reads]
            if unread:
                able = [r.profile for r in self._readers if set(codes) <= r.reads]
                hint = f"profiles that read {wanted}: {', '.join(able)}" if able else ""
                raise InvalidSettingsError(
                    f"profile {profile!r} cannot read {', '.join(unread)}"
                    + (f"; {hint}" if hint else "; leave the profile empty to use the route")
                )
            return profile
        reader = self._choose(codes)
        if reader is None:
            raise InvalidSettingsError(
                f"no installed engine reads {wanted} together; request the languages one at "
                f"a time, or install Tesseract data for all of them (scripts/setup --languages)"
            )
        return reader.profile

    def _choose(self, codes: tuple[str, ...]) -> Reader | None:
        wanted = set(codes)
        default = self._by_profile.get(self._default)
        if default is not None and wanted <= default.reads_well:
            return default
        for reader in self._readers:
            if wanted <= reader.reads_well:
                return reader
        return None


def common_readers(per_host: Sequence[Sequence[Reader]]) -> tuple[Reader, ...]:
    """What every one of several hosts reads: the profiles all of them have, each reading
    the languages all of them read with it (a cluster's page may run on any host); sorted
    by profile name, so the same hosts in another order give an equal answer."""
    if not per_host:
        return ()
    first, *others = per_host
    common = []
    for reader in first:
        same = [r for host in others for r in host if r.profile == reader.profile]
        if len(same) < len(others):
            continue  # some host lacks the profile
        reads, well = set(reader.reads), set(reader.reads_well)
        for other in same:
            reads &= other.reads
            well &= other.reads_well
        common.append(Reader(reader.profile, reader.engine, frozenset(reads), frozenset(well)))
    return tuple(sorted(common, key=lambda reader: reader.profile))
