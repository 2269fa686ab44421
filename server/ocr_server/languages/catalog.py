"""Every language the service knows: its BCP-47 code, script, Tesseract data name, the
letters a recogniser restricted to it may output, and which PaddleOCR recognisers were
measured to read it well (docs/languages.md).

A request names languages by BCP-47 tag (`fr`, `pt-BR`, `zh-Hant`, `zh-TW`), ISO 639-2 or
Tesseract code (`fra`, `chi_tra`) or English name (`french`); several at once with `+` or
`,` (`en+de`). `parse` turns that into catalog codes; the canonical form is joined by `+`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocr_server.errors import InvalidSettingsError

TINY_REC = "PP-OCRv6_tiny_rec"
SMALL_REC = "PP-OCRv6_small_rec"
V4_REC = "PP-OCRv4_mobile_rec"


def _span(first: int, last: int, skip: str = "") -> str:
    return "".join(chr(c) for c in range(first, last + 1) if chr(c) not in skip)


def _both_cases(letters: str) -> str:
    return "".join(dict.fromkeys(letters + letters.upper()))


# What a restricted recogniser may output in any language: ASCII (Latin words, codes and
# numbers appear in every company's documents), Latin-1 punctuation and symbols, the Greek
# letters of technical text (mu, pi, Omega), punctuation, currency, letterlike and
# mathematical symbols, arrows, box drawing.
COMMON_RANGES = (
    (0x0020, 0x007E),  # Basic Latin
    (0x00A0, 0x00BF),  # Latin-1 punctuation and symbols (« » ° § ¿ ¡)
    (0x00D7, 0x00D7),  # multiplication sign
    (0x00F7, 0x00F7),  # division sign
    (0x0370, 0x03FF),  # Greek (alpha, mu, pi, ...)
    (0x2010, 0x205E),  # General Punctuation (dashes, quotes, bullets, daggers)
    (0x2070, 0x209F),  # superscripts and subscripts
    (0x20A0, 0x20CF),  # currency symbols
    (0x2100, 0x214F),  # letterlike symbols
    (0x2150, 0x218F),  # number forms
    (0x2190, 0x21FF),  # arrows
    (0x2200, 0x22FF),  # mathematical operators
    (0x2500, 0x25FF),  # box drawing, blocks, geometric shapes
)

# English keeps every Latin letter: names and loan words bring accents of all kinds.
_ALL_LATIN = _span(0x00C0, 0x024F, skip="\u00d7\u00f7") + _span(0x1E00, 0x1EFF)
_VIETNAMESE = _both_cases("àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ")
_CYRILLIC = _span(0x0400, 0x04FF)
_GREEK = _span(0x0370, 0x03FF) + _span(0x1F00, 0x1FFF)
_ARABIC = _span(0x0600, 0x06FF) + _span(0x0750, 0x077F)
_HEBREW = _span(0x0590, 0x05FF)
_DEVANAGARI = _span(0x0900, 0x097F)
_NAGARI = "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह"
_THAI = _span(0x0E00, 0x0E7F)
# A recogniser reads Japanese only if its dictionary holds the kana; Traditional Chinese only
# if it holds these common traditional forms (simplified-only dictionaries lack them).
_ARCHAIC_KANA = "ゎゐゑヮヰヱヵヶ"
_KANA = _span(0x3041, 0x3093, _ARCHAIC_KANA) + _span(0x30A1, 0x30F6, _ARCHAIC_KANA)
_TRADITIONAL = "們個這說時國會發來對與關於為還進書車門問間東經歷"
_SIMPLIFIED = "们个这说时国会发来对与关于为还进书车门问间东经历"
_HANGUL = "가나다라마바사아자차카타파하"


@dataclass(frozen=True)
class Language:
    """One language as the service offers it."""

    code: str  # BCP-47, as GetCapabilities lists it
    name: str  # English name
    script: str  # ISO 15924 (Jpan = Han + kana, Kore = Hangul + Han)
    tesseract: str  # Tesseract's data name (Debian package tesseract-ocr-<name with - for _>)
    # Letters beyond ASCII that a restricted recogniser may output; None: not restricted
    # (the Chinese-Japanese dictionaries are the language's own characters).
    letters: str | None
    # Characters a PaddleOCR recogniser's dictionary must hold to read the language at all.
    required: str
    # PaddleOCR recognisers measured to read it well (docs/languages.md), best first.
    recognizers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def right_to_left(self) -> bool:
        return self.script in ("Arab", "Hebr")

    @property
    def debian_name(self) -> str:
        """Debian's package holding the Tesseract data is tesseract-ocr-<this>."""
        return self.tesseract.lower().replace("_", "-")


def _latin(
    code: str,
    name: str,
    tesseract: str,
    letters: str,
    recognizers: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Language:
    letters = _both_cases(letters)
    return Language(code, name, "Latn", tesseract, letters, letters, recognizers, aliases)


BOTH = (TINY_REC, SMALL_REC)  # tiny first: it is the faster

LANGUAGES: tuple[Language, ...] = (
    Language("en", "English", "Latn", "eng", _ALL_LATIN, "", (*BOTH, V4_REC)),
    # Measured on rendered pages (docs/languages.md): restricted to its alphabet, tiny reads
    # these within 0.5% CER; Turkish's dotless i only small reads well enough.
    _latin("fr", "French", "fra", "àâæçéèêëîïôœùûüÿ", BOTH),
    _latin("de", "German", "deu", "äöüß", BOTH),
    _latin("es", "Spanish", "spa", "áéíóúñü", BOTH),
    _latin("it", "Italian", "ita", "àèéìíîòóùú", BOTH),
    _latin("pt", "Portuguese", "por", "áâãàçéêíóôõúü", BOTH),
    _latin("nl", "Dutch", "nld", "áéíóúàèëïöüĳ", BOTH),
    _latin("pl", "Polish", "pol", "ąćęłńóśźż", BOTH),
    _latin("cs", "Czech", "ces", "áčďéěíňóřšťúůýž", BOTH),
    _latin("sk", "Slovak", "slk", "áäčďéíĺľňóôŕšťúýž"),
    _latin("sl", "Slovenian", "slv", "čšž"),
    _latin("hr", "Croatian", "hrv", "čćđšž"),
    _latin("ro", "Romanian", "ron", "ăâîșțşţ", aliases=("rum",)),
    _latin("hu", "Hungarian", "hun", "áéíóöőúüű"),
    _latin("sv", "Swedish", "swe", "åäöé"),
    _latin("da", "Danish", "dan", "æøåé"),
    _latin("nb", "Norwegian Bokmål", "nor", "æøåéèêóòô", aliases=("no", "nn", "norwegian")),
    _latin("fi", "Finnish", "fin", "äöåšž"),
    _latin("ca", "Catalan", "cat", "àèéíïòóúüç·"),
    _latin("id", "Indonesian", "ind", "é"),
    _latin("tr", "Turkish", "tur", "çğıİöşüâîû", (SMALL_REC,)),
    Language("vi", "Vietnamese", "Latn", "vie", _VIETNAMESE, _VIETNAMESE),
    Language("ru", "Russian", "Cyrl", "rus", _CYRILLIC, "абвгдежзийклмнопрстуфхцчшщъыьэюяё"),
    Language("uk", "Ukrainian", "Cyrl", "ukr", _CYRILLIC, "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя"),
    Language("bg", "Bulgarian", "Cyrl", "bul", _CYRILLIC, "абвгдежзийклмнопрстуфхцчшщъьюя"),
    Language("sr", "Serbian", "Cyrl", "srp", _CYRILLIC, "абвгдђежзијклљмнњопрстћуфхцчџш"),
    Language("el", "Greek", "Grek", "ell", _GREEK, "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώ"),
    Language("ar", "Arabic", "Arab", "ara", _ARABIC, "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"),
    Language("fa", "Persian", "Arab", "fas", _ARABIC, "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی"),
    Language("he", "Hebrew", "Hebr", "heb", _HEBREW, "אבגדהוזחטיכלמנסעפצקרשתךםןףץ"),
    Language("hi", "Hindi", "Deva", "hin", _DEVANAGARI, _NAGARI),
    Language("mr", "Marathi", "Deva", "mar", _DEVANAGARI, _NAGARI + "ळ"),
    Language("ne", "Nepali", "Deva", "nep", _DEVANAGARI, _NAGARI),
    Language("th", "Thai", "Thai", "tha", _THAI, "กขคฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ"),
    Language("ko", "Korean", "Kore", "kor", None, _HANGUL),
    Language("ja", "Japanese", "Jpan", "jpn", None, _KANA, (SMALL_REC,)),
    Language(
        "zh",
        "Chinese (Simplified)",
        "Hans",
        "chi_sim",
        None,
        _SIMPLIFIED,
        (*BOTH, V4_REC),
        ("zh-hans", "ch", "chinese"),
    ),
    Language("zh-Hant", "Chinese (Traditional)", "Hant", "chi_tra", None, _TRADITIONAL, BOTH),
)

BY_CODE: dict[str, Language] = {language.code: language for language in LANGUAGES}
DEFAULT_LANGUAGE = "en"

# BCP-47 regions that mean Traditional Chinese.
_TRADITIONAL_REGIONS = ("tw", "hk", "mo")


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for language in LANGUAGES:
        for alias in (
            language.code,
            language.tesseract,
            language.name.lower(),
            *language.aliases,
        ):
            table.setdefault(alias.lower().replace("-", "_"), language.code)
    # ISO 639-2/B codes that differ from Tesseract's (ISO 639-2/T) names.
    bibliographic = {"fre": "fr", "ger": "de", "dut": "nl", "cze": "cs", "gre": "el"}
    bibliographic |= {"per": "fa", "slo": "sk", "chi": "zh", "english": "en"}
    for alias, code in bibliographic.items():
        table.setdefault(alias, code)
    return table


ALIASES = _alias_table()


def canonical(tag: str) -> str | None:
    """The catalog code for one BCP-47 tag or alias, or None when the catalog lacks it:
    `pt-BR` -> `pt`, `zh-TW` -> `zh-Hant`, `zh-Hans-CN` -> `zh`, `FRA` -> `fr`."""
    key = tag.strip().lower().replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    primary, *subtags = key.split("_")
    if primary == "zh":
        traditional = "hant" in subtags or any(s in _TRADITIONAL_REGIONS for s in subtags)
        return "zh-Hant" if traditional and "hans" not in subtags else "zh"
    return ALIASES.get(primary) if subtags else None


def parse(text: str) -> tuple[str, ...]:
    """The catalog codes of a request's `language` ('' is the default), in the order given,
    without repeats. InvalidSettingsError names a code that is not in the catalog."""
    tags = [t for t in text.replace(",", "+").split("+") if t.strip()] or [DEFAULT_LANGUAGE]
    codes: list[str] = []
    for tag in tags:
        code = canonical(tag)
        if code is None:
            raise UnknownLanguageError(tag.strip()[:40])
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def join(codes: tuple[str, ...]) -> str:
    return "+".join(codes)


def split(language: str) -> tuple[Language, ...]:
    """The catalog entries of a canonical language string (`en+de`)."""
    return tuple(BY_CODE[code] for code in language.split("+") if code)


class UnknownLanguageError(InvalidSettingsError):
    """A language tag the catalog does not know."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"unknown language {tag!r}")
        self.tag = tag
