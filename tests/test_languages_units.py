"""The languages package without a server: codes, routing, alphabets and the page check."""

# ruff: noqa: RUF001 (letters of other alphabets are the point here)

from __future__ import annotations

import pytest

from ocr_server.engines.base import RecognizedLine
from ocr_server.engines.charset import allowed_mask, space_prior, strip_disallowed
from ocr_server.errors import InvalidSettingsError
from ocr_server.languages.catalog import (
    BY_CODE,
    LANGUAGES,
    UnknownLanguageError,
    canonical,
    parse,
)
from ocr_server.languages.routing import LanguageRouter, Reader, common_readers
from ocr_server.languages.scripts import check_page, script_of

BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("fr-CA", "fr"),
        ("pt-BR", "pt"),
        ("pt_PT", "pt"),
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("zh-Hans-CN", "zh"),
        ("zh-Hant", "zh-Hant"),
        ("zh-TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("chi_tra", "zh-Hant"),
        ("ch", "zh"),
        ("eng", "en"),
        ("ger", "de"),
        ("fra", "fr"),
        ("french", "fr"),
        ("no", "nb"),
        ("sr-Cyrl-RS", "sr"),
        ("xx", None),
        ("xx-YY", None),
        ("", None),
    ],
)
def test_bcp47_tags_resolve_to_catalog_codes(tag: str, code: str | None) -> None:
    assert canonical(tag) == code


def test_several_languages_parse_in_order_without_repeats() -> None:
    assert parse("") == ("en",)
    assert parse("en+de") == ("en", "de")
    assert parse(" de , en-GB ,deu") == ("de", "en")
    with pytest.raises(UnknownLanguageError, match="'klingon'"):
        parse("en+klingon")


def test_catalog_is_consistent() -> None:
    assert len(BY_CODE) == len(LANGUAGES)
    tesseract_names = [language.tesseract for language in LANGUAGES]
    assert len(set(tesseract_names)) == len(tesseract_names)
    for language in LANGUAGES:
        assert canonical(language.code) == language.code
        # a restricted language allows what a recogniser must hold to read it
        if language.letters is not None:
            assert set(language.required) <= set(language.letters), language.code


FAST = Reader(
    "fast", "paddleocr", frozenset({"en", "de", "fr", "zh"}), frozenset({"en", "de", "zh"})
)
ACCURATE = Reader(
    "accurate",
    "paddleocr",
    frozenset({"en", "de", "fr", "zh", "ja"}),
    frozenset({"en", "de", "fr", "zh", "ja"}),
)
TESSERACT = Reader(
    "tesseract", "tesseract", frozenset({"en", "ru", "ko"}), frozenset({"en", "ru", "ko"})
)


def router(default: str = "fast") -> LanguageRouter:
    return LanguageRouter([TESSERACT, FAST, ACCURATE], default)


def test_routes_prefer_the_default_then_paddleocr_then_tesseract() -> None:
    routes = {route.language: route for route in router().routes()}
    assert list(routes) == ["en", "fr", "de", "ru", "ko", "ja", "zh"]  # catalog order
    assert (routes["en"].engine, routes["en"].profile) == ("paddleocr", "fast")
    assert routes["en"].profiles == ("fast", "accurate", "tesseract")
    assert routes["fr"].profile == "accurate"  # fast reads it, but not well
    assert routes["fr"].profiles == ("accurate", "fast")
    assert (routes["ru"].engine, routes["ru"].profile) == ("tesseract", "tesseract")
    assert router("accurate").resolve(("de",), "") == "accurate"


def test_resolution_of_several_languages_and_named_profiles() -> None:
    route = router()
    assert route.resolve(("en", "de"), "") == "fast"
    assert route.resolve(("en", "fr"), "") == "accurate"
    assert route.resolve(("en", "ru"), "") == "tesseract"
    assert route.resolve(("fr",), "fast") == "fast"  # asked for: reads it, less well
    assert route.resolve(("en",), "custom-not-installed") == "custom-not-installed"
    with pytest.raises(
        InvalidSettingsError,
        match=r"'fast' cannot read ja; profiles that read ja: accurate$",
    ):
        route.resolve(("ja",), "fast")
    with pytest.raises(InvalidSettingsError, match=r"no installed engine reads fr\+ru together"):
        route.resolve(("fr", "ru"), "")
    with pytest.raises(InvalidSettingsError, match=r"'el' \(Greek\) is not installed.*en, fr"):
        route.resolve(("el",), "")


def test_a_cluster_reads_what_every_host_reads() -> None:
    """Pages go to any host: a profile counts when every host has it, a language when every
    host reads it with that profile."""
    fewer_languages = Reader("tesseract", "tesseract", frozenset({"ru"}), frozenset({"ru"}))
    common = common_readers([[TESSERACT, FAST, ACCURATE], [fewer_languages, FAST]])
    assert common == (FAST, fewer_languages)  # sorted by profile name; accurate on one host
    assert common_readers([[FAST], [ACCURATE]]) == ()
    assert common_readers([[TESSERACT, FAST]]) == (FAST, TESSERACT)
    assert common_readers([]) == ()
    cluster = LanguageRouter(common, "fast", "on the live worker hosts")
    with pytest.raises(InvalidSettingsError, match=r"'ko' \(Korean\) is not installed on the live"):
        cluster.resolve(("ko",), "")


def dictionary() -> list[str]:
    """A recogniser dictionary as PaddleX lays it out: blank first, space last."""
    return ["blank", "a", "é", "ą", "ß", "ş", "ı", "ж", "家", "€", "ồ", " "]


def allowed(language: str) -> set[str]:
    mask = allowed_mask(dictionary(), language)
    assert mask is not None
    return {ch for ch, ok in zip(dictionary(), mask, strict=True) if ok}


def test_each_latin_language_allows_its_own_letters() -> None:
    common = {"blank", "a", "€", " "}
    assert allowed("fr") == common | {"é"}
    assert allowed("pl") == common | {"ą"}
    assert allowed("de") == common | {"ß"}
    assert allowed("tr") == common | {"ş", "ı"}
    assert allowed("de+pl") == common | {"ß", "ą"}
    assert allowed("en") == common | {"é", "ą", "ß", "ş", "ı", "ồ"}  # every Latin letter
    assert allowed("ru") == common | {"ж"}
    assert allowed_mask(dictionary(), "ja") is None
    assert allowed_mask(dictionary(), "en+zh") is None  # Chinese is not restricted
    assert strip_disallowed("Straße ồ 家", "de") == "Straße  "
    assert space_prior("fr") == space_prior("en+de") > 1.0
    assert space_prior("ru") == space_prior("zh") == 1.0


def test_scripts_of_letters() -> None:
    assert [script_of(ch) for ch in "aЖλب5 .가の家"] == [
        "Latn",
        "Cyrl",
        "Grek",
        "Arab",
        None,
        None,
        None,
        "Hang",
        "Hira",
        "Hani",
    ]


def lines(*texts: str, confidence: float = 0.98) -> list[RecognizedLine]:
    return [RecognizedLine(text, confidence, BOX) for text in texts]


def test_a_page_in_the_requested_script_has_no_warning() -> None:
    assert check_page(lines("Совещание переносится на четверг, Moscow"), "ru", "tesseract") == ()
    assert (
        check_page(lines("三月分の請求書を同封いたしますのでご確認ください。"), "ja", "paddleocr")
        == ()
    )
    assert check_page(lines("Rechnung", "12.03."), "de", "paddleocr") == ()  # too short to judge


def test_a_page_in_another_script_or_doubted_is_flagged() -> None:
    (mismatch,) = check_page(lines("Совещание переносится на четверг"), "en", "tesseract")
    assert mismatch.code == "SCRIPT_MISMATCH"
    assert "Cyrl" in mismatch.message and "English (en)" in mismatch.message
    junk = lines("CoBejaHíée IepeHocITca Ha ueTBepr, Ha AecTb yacOB", confidence=0.7)
    (doubt,) = check_page(junk, "en", "paddleocr")
    assert doubt.code == "LOW_CONFIDENCE"
    # Tesseract's confidences run lower than PaddleOCR's on pages it reads right.
    assert (
        check_page(lines("Der Vertrag wird jedes Jahr erneuert", confidence=0.7), "de", "tesseract")
        == ()
    )


def test_tesseract_pieces_become_the_lines_words() -> None:
    from ocr_server.engines.tesseract import _group_by_spaces, _Piece

    def piece(text: str, x: int) -> _Piece:
        return _Piece(text, 0.9, (x, 0, x + 10, 10))

    korean = [piece("보", 0), piece("내", 10), piece("드", 30), piece("립", 40), piece("니다.", 50)]
    words = _group_by_spaces(korean, "보내 드립니다.")
    assert [(w.text, w.box) for w in words] == [
        ("보내", (0, 0, 20, 10)),
        ("드립니다.", (30, 0, 60, 10)),
    ]
    # right to left: Tesseract spells each piece in visual order, the line in logical order
    arabic = [piece("ىجري", 60), piece("عفد", 30)]
    assert [w.text for w in _group_by_spaces(arabic, "يرجى دفع")] == ["يرجى", "دفع"]
    # pieces that do not add up to the line's words stay as they are
    assert _group_by_spaces(arabic, "يرجى") == arabic
    assert _group_by_spaces(korean, "보내 드립니다. 끝") == korean
