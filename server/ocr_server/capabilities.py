"""What this server can recognise (languages, installed profiles) and how a request's settings
are checked and completed with defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ocr_server.documents import DEFAULT_DPI, MAX_DPI, MIN_DPI
from ocr_server.engines.profiles import Profile
from ocr_server.engines.tesseract import installed_data
from ocr_server.errors import InvalidSettingsError, NoWorkerHostError
from ocr_server.languages.catalog import LANGUAGES, UnknownLanguageError, join, parse
from ocr_server.languages.routing import LanguageRouter, Reader, Route
from ocr_server.models import Settings


@dataclass(frozen=True)
class Capabilities:
    profiles: dict[str, Profile]
    installed_profiles: tuple[str, ...]
    default_profile: str
    router: LanguageRouter
    # Why nothing can be read at all (a cluster that no worker host has joined yet): Submit
    # is then UNAVAILABLE with this message instead of INVALID_ARGUMENT.
    unavailable: str = ""

    @classmethod
    def discover(
        cls,
        profiles: dict[str, Profile],
        model_dir: Path,
        default_profile: str,
        fake_engine: bool,
        tessdata: Path | None = None,
    ) -> Capabilities:
        """What this machine reads: its installed models and Tesseract data."""
        installed = [
            name for name, p in profiles.items() if fake_engine or p.is_installed(model_dir)
        ]
        tesseract_data = frozenset() if fake_engine else installed_data(tessdata)
        readers = [
            _reader(profiles[name], model_dir, tesseract_data, fake_engine) for name in installed
        ]
        return cls.from_readers(profiles, readers, default_profile)

    @classmethod
    def from_readers(
        cls,
        profiles: dict[str, Profile],
        readers: Sequence[Reader],
        default_profile: str,
        where: str = "on this server",
    ) -> Capabilities:
        """The capabilities of `readers` (discovered here, or registered by a cluster's worker
        hosts), limited to the profiles this server defines (it describes them)."""
        order = list(profiles)  # routing tries profiles in the order they are defined
        known = sorted(
            (reader for reader in readers if reader.profile in profiles),
            key=lambda reader: order.index(reader.profile),
        )
        return cls(
            profiles,
            tuple(reader.profile for reader in known),
            default_profile,
            LanguageRouter(known, default_profile, where),
        )

    @property
    def readers(self) -> tuple[Reader, ...]:
        return self.router.readers

    @property
    def languages(self) -> tuple[str, ...]:
        return self.router.installed()

    def routes(self) -> tuple[Route, ...]:
        return self.router.routes()

    def resolve(self, language: str, profile: str, pages: str, dpi: int) -> Settings:
        """Check a request's settings and fill in defaults; InvalidSettingsError says why
        (NoWorkerHostError when nothing can be read at all)."""
        if self.unavailable:
            raise NoWorkerHostError(self.unavailable)
        try:
            codes = parse(language)
        except UnknownLanguageError as exc:
            raise InvalidSettingsError(
                f"unknown language {exc.tag!r}; installed: {', '.join(self.languages)} "
                "(BCP-47 codes such as fr, pt-BR, zh-Hant; several as en+de)"
            ) from exc
        profile = self.router.resolve(codes, profile.strip())
        if profile not in self.profiles:
            raise InvalidSettingsError(
                f"unknown profile {profile[:40]!r}; known: " + ", ".join(self.profiles)
            )
        if profile not in self.installed_profiles:
            raise InvalidSettingsError(
                f"profile {profile!r} is not installed {self.router.where}; installed: "
                + (", ".join(self.installed_profiles) or "none")
            )
        dpi = dpi or DEFAULT_DPI
        if not MIN_DPI <= dpi <= MAX_DPI:
            raise InvalidSettingsError(f"dpi {dpi} is out of range {MIN_DPI}-{MAX_DPI}")
        return Settings(language=join(codes), profile=profile, pages=pages.strip(), dpi=dpi)


def _reader(
    profile: Profile, model_dir: Path, tesseract_data: frozenset[str], fake_engine: bool
) -> Reader:
    """The languages one installed profile reads (at all, and well)."""
    if profile.is_tesseract:
        codes = frozenset(lang.code for lang in LANGUAGES if lang.tesseract in tesseract_data)
        return Reader(profile.name, "tesseract", codes, codes)
    measured = {lang.code for lang in LANGUAGES if profile.rec_model in lang.recognizers}
    declared = set(profile.languages)
    if fake_engine:  # no model files: the measured table alone
        reads = measured | declared
    else:
        dictionary = profile.dictionary(model_dir)
        reads = {lang.code for lang in LANGUAGES if set(lang.required) <= dictionary}
    well = (measured & reads) | declared
    return Reader(profile.name, "paddleocr", frozenset(reads | declared), frozenset(well))
