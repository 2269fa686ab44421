"""Language restriction of the recogniser's CTC decoding, on PaddleX's own decoder class."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ocr_server.engines.charset import (
    MAX_RUNS,
    MaskedCtcDecoder,
    allowed_mask,
    strip_disallowed,
)

# PaddleX's dictionary layout: blank first, the model's characters, the space last.
FULLWIDTH_COLON = "\uff1a"
CHARACTERS = ["a", "b", "é", "€", "家", FULLWIDTH_COLON]


def ctc_decoder() -> Any:
    processors = pytest.importorskip("paddlex.inference.models.text_recognition.processors")
    return processors.CTCLabelDecode(character_list=CHARACTERS)


def frames(*rows: dict[str, float]) -> npt.NDArray[np.float32]:
    """One line's per-frame probabilities; what a row does not name shares the rest."""
    classes = ["blank", *CHARACTERS, " "]
    out = np.zeros((1, len(rows), len(classes)), dtype=np.float32)
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(classes) - len(row))
        out[0, t, :] = rest
        for name, p in row.items():
            out[0, t, classes.index(name)] = p
    return out


def test_english_allows_latin_punctuation_and_symbols_only() -> None:
    decoder = ctc_decoder()
    mask = allowed_mask(decoder.character, "en")
    assert mask is not None
    allowed = {ch for ch, ok in zip(decoder.character, mask, strict=True) if ok}
    assert allowed == {"blank", "a", "b", "é", "€", " "}
    assert allowed_mask(decoder.character, "zh") is None


def test_english_reads_the_best_allowed_character() -> None:
    decoder = MaskedCtcDecoder(ctc_decoder())
    # The model prefers 家 on the second frame, with "b" its best Latin alternative.
    pred = [
        frames(
            {"a": 0.9}, {"家": 0.6, "b": 0.3}, {"blank": 0.9}, {FULLWIDTH_COLON: 0.5, "blank": 0.4}
        )
    ]
    decoder.language = "zh"
    assert decoder(pred)[0] == ["a家" + FULLWIDTH_COLON]
    decoder.language = "en"
    texts, scores = decoder(pred)
    assert texts == ["ab"]
    assert 0.0 <= scores[0] <= 1.0


def test_english_restores_spaces_the_model_underrates() -> None:
    decoder = MaskedCtcDecoder(ctc_decoder())
    pred = [frames({"a": 0.9}, {"blank": 0.5, " ": 0.3}, {"b": 0.9})]
    decoder.language = "zh"
    assert decoder(pred)[0] == ["ab"]
    decoder.language = "en"
    texts, scores = decoder(pred)
    assert texts == ["a b"]
    assert 0.0 <= scores[0] <= 1.0


def test_fallback_filter_drops_disallowed_characters() -> None:
    assert strip_disallowed("TOTAL 家家 9.00 €", "en") == "TOTAL  9.00 €"
    assert strip_disallowed("合计 9.00", "zh") == "合计 9.00"


TECH_CHARACTERS = ["a", "b", "A", ":", ".", ",", "("]  # PaddleX adds the space


def space_between(left: str, right: str) -> str:
    """Decode `left`, a gap the model reads as blank but rates a space at 0.3, then `right`."""
    processors = pytest.importorskip("paddlex.inference.models.text_recognition.processors")
    decoder = MaskedCtcDecoder(processors.CTCLabelDecode(character_list=TECH_CHARACTERS))
    decoder.language = "en"
    classes = ["blank", *TECH_CHARACTERS, " "]
    pred = np.full((1, 3, len(classes)), 0.01, dtype=np.float32)
    pred[0, 0, classes.index(left)] = 0.9
    pred[0, 1, classes.index("blank")] = 0.5
    pred[0, 1, classes.index(" ")] = 0.3
    pred[0, 2, classes.index(right)] = 0.9
    text: str = decoder([pred])[0][0]
    return text


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("a", "b", "a b"),  # between words: the receipts' lost spaces
        (",", "b", ", b"),  # after a comma before a word
        (".", "A", ". A"),  # a sentence's end before a capital
        ("(", "a", "(a"),  # never after an opening bracket
        ("a", ":", "a:"),  # never before a colon ("https ://")
        (":", ":", "::"),  # nor inside punctuation ("tools: :")
        (".", "b", ".b"),  # nor after a dot before lower case (". onLoad")
        ("a", "(", "a ("),  # before an opening bracket, as between words
    ],
)
def test_space_prior_only_where_prose_has_spaces(left: str, right: str, expected: str) -> None:
    assert space_between(left, right) == expected


def test_one_pass_decoding_matches_paddlex_decoder_and_positions() -> None:
    """The one-pass decoding of PaddleX's CTCLabelDecode (restricted or not, with the space
    prior) gives what PaddleX's own decoder and the positions pass give for any other
    decoder class: same texts, scores, character frames and probabilities."""
    processors = pytest.importorskip("paddlex.inference.models.text_recognition.processors")

    class OtherDecoder(processors.CTCLabelDecode):  # type: ignore[misc]
        """Not CTCLabelDecode by name: decoded by PaddleX, positions afterwards."""

    characters = [*TECH_CHARACTERS, "家", "é"]
    rng = np.random.default_rng(7)
    for language in ("en", "zh", "fr"):
        fast = MaskedCtcDecoder(processors.CTCLabelDecode(character_list=characters))
        generic = MaskedCtcDecoder(OtherDecoder(character_list=characters))
        fast.language = generic.language = language
        for _ in range(40):
            logits = rng.normal(size=(1, 30, len(characters) + 2)).astype(np.float32) * 3
            logits[0, :, 0] += 2.0  # blanks, as CTC output has them
            pred = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
            kwargs = {"wh_ratio_list": [5.0], "max_wh_ratio": 6.0}
            (ours, our_scores) = fast([pred], **kwargs)
            (theirs, their_scores) = generic([pred], **kwargs)
            assert ours == theirs and our_scores == their_scores
            assert (ours[0].columns, ours[0].frames, ours[0].probabilities) == (
                theirs[0].columns,
                theirs[0].frames,
                theirs[0].probabilities,
            )


@pytest.mark.parametrize("rec_model", ["PP-OCRv6_tiny_rec", "PP-OCRv6_small_rec"])
def test_allowed_columns_copied_in_runs_equal_the_gather(rec_model: str) -> None:
    """Every restricted language of the catalog, on the bundled recognisers' real
    dictionaries: the allowed columns copied run by run (few runs) or gathered (many) are
    exactly the columns the restriction names, in order."""
    processors = pytest.importorskip("paddlex.inference.models.text_recognition.processors")
    yaml = pytest.importorskip("yaml")
    from ocr_server.config import default_model_dir
    from ocr_server.languages.catalog import LANGUAGES

    config = default_model_dir() / rec_model / "inference.yml"
    if not config.is_file():
        pytest.skip(f"{rec_model} is not installed (scripts/setup)")
    characters = yaml.safe_load(config.read_text())["PostProcess"]["character_dict"]
    decoder = MaskedCtcDecoder(processors.CTCLabelDecode(character_list=characters))
    probs = np.random.default_rng(3).random((25, len(characters) + 2), dtype=np.float32)
    run_counts = []
    for language in [lang.code for lang in LANGUAGES] + ["en+fr+de"]:
        decoder.language = language
        restriction = decoder._restriction()
        if restriction is None:
            continue
        run_counts.append(len(restriction.runs))
        assert np.array_equal(restriction.allowed(probs), probs[:, restriction.columns])
    # both ways were taken: English is a few runs, Czech or Slovak many
    assert min(run_counts) <= MAX_RUNS < max(run_counts)
