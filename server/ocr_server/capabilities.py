"""What this server can recognise (languages, installed profiles) and how a request's settings
are checked and completed with defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_server.documents import DEFAULT_DPI, MAX_DPI, MIN_DPI
from ocr_server.engines.profiles import Profile
from ocr_server.errors import InvalidSettingsError
from ocr_server.models import Settings

# Every bundled model pair reads Chinese and English (PP-OCRv6 and PP-OCRv4 "ch" models).
LANGUAGES = ("en", "zh")
LANGUAGE_ALIASES = {"eng": "en", "english": "en", "ch": "zh", "chi_sim": "zh", "chinese": "zh"}
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Capabilities:
    languages: tuple[str, ...]
    profiles: dict[str, Profile]
    installed_profiles: tuple[str, ...]
    default_profile: str

    @classmethod
    def discover(
        cls,
        profiles: dict[str, Profile],
        model_dir: Path,
        default_profile: str,
        fake_engine: bool,
    ) -> Capabilities:
        installed = tuple(
            name for name, p in profiles.items() if fake_engine or p.is_installed(model_dir)
        )
        return cls(LANGUAGES, profiles, installed, default_profile)

    def resolve(self, language: str, profile: str, pages: str, dpi: int) -> Settings:
        """Check a request's settings and fill in defaults; InvalidSettingsError says why."""
        language = language.strip().lower() or DEFAULT_LANGUAGE
        language = LANGUAGE_ALIASES.get(language, language)
        if language not in self.languages:
            raise InvalidSettingsError(
                f"language {language[:40]!r} is not installed; installed: "
                + ", ".join(self.languages)
            )
        profile = profile.strip() or self.default_profile
        if profile not in self.profiles:
            raise InvalidSettingsError(
                f"unknown profile {profile[:40]!r}; known: " + ", ".join(self.profiles)
            )
        if profile not in self.installed_profiles:
            raise InvalidSettingsError(
                f"profile {profile!r} is not installed on this server; installed: "
                + ", ".join(self.installed_profiles)
            )
        dpi = dpi or DEFAULT_DPI
        if not MIN_DPI <= dpi <= MAX_DPI:
            raise InvalidSettingsError(f"dpi {dpi} is out of range {MIN_DPI}-{MAX_DPI}")
        return Settings(language=language, profile=profile, pages=pages.strip(), dpi=dpi)
