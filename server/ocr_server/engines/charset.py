"""Restrict the recogniser to the request's language by masking its CTC output.

The bundled recognisers read Chinese, Japanese and the Latin alphabets with one dictionary
(6,900 characters for tiny, 18,700 for small), so on an English page a dotted leader or a
smudge can come out as a run of CJK characters, and on a French one an accent can come out
as a Vietnamese or Czech one. Zeroing the probabilities of characters outside the language
(its letters, languages/catalog.py, plus shared symbols) before the per-frame argmax makes
the model pick the best character it is allowed to (or the CTC blank) instead, which is
better than deleting what it read afterwards.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from ocr_server.engines.words import DecodedText
from ocr_server.languages.catalog import COMMON_RANGES, split

log = logging.getLogger(__name__)

# How much more likely than the model says a space is, for Latin-script languages. The
# bundled recognisers learnt mostly from Chinese, which has no spaces, and drop many of them
# in English (receipts in particular: "THANK YOUFOR"); a prior on the space class restores
# them (measured in docs/benchmarks.md).
LATIN_SPACE_PRIOR = 3.0


def allowed_predicate(language: str) -> Callable[[str], bool] | None:
    """Whether a dictionary entry may be output for a canonical language string (`en+de`):
    the shared symbols plus each language's letters; None when a language is not restricted
    (Chinese, Japanese, Korean: the dictionary is their own)."""
    languages = split(language)
    if not languages or any(lang.letters is None for lang in languages):
        return None
    letters = frozenset("".join(lang.letters or "" for lang in languages))

    def allowed(token: str) -> bool:
        return all(
            ch in letters or any(lo <= ord(ch) <= hi for lo, hi in COMMON_RANGES) for ch in token
        )

    return allowed


def space_prior(language: str) -> float:
    languages = split(language)
    return LATIN_SPACE_PRIOR if languages and all(x.script == "Latn" for x in languages) else 1.0


# Beyond this many runs of neighbouring columns a language's columns are gathered one by one.
MAX_RUNS = 16

# Where running text has no space, so the space prior must not put one (charset.py's
# _Restriction.space_flips): before these, and after those.
_NO_SPACE_BEFORE = frozenset(":;,.!?)]}/")
_NO_SPACE_AFTER = frozenset("([{/")


def allowed_mask(characters: Sequence[str], language: str) -> npt.NDArray[np.bool_] | None:
    """Which dictionary entries the language allows (entry 0, the CTC blank, always), or
    None when the language is not restricted."""
    allowed = allowed_predicate(language)
    if allowed is None:
        return None
    return np.array([index == 0 or allowed(token) for index, token in enumerate(characters)])


def strip_disallowed(text: str, language: str) -> str:
    """The fallback for a recogniser that cannot be masked: drop disallowed characters."""
    allowed = allowed_predicate(language)
    return text if allowed is None else "".join(ch for ch in text if allowed(ch))


class MaskedCtcDecoder:
    """Wraps PaddleX's CTCLabelDecode so that it decodes only the language's characters.

    For a restricted language it hands the decoder only the allowed columns of the output
    (the CTC blank stays column 0) together with a copy of itself whose dictionary holds
    just those characters: the same argmax as zeroing the others, without copying the
    whole 6,900-class output. `language` is set before each page.
    """

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self._characters: list[str] = list(decoder.character)
        self._restricted: dict[str, _Restriction | None] = {}
        self.language = ""

    def _restriction(self) -> _Restriction | None:
        if self.language not in self._restricted:
            mask = allowed_mask(self._characters, self.language)
            if mask is None:
                self._restricted[self.language] = None
            else:
                columns = np.flatnonzero(mask)
                decoder = copy.copy(self._decoder)
                decoder.character = [self._characters[i] for i in columns]
                space = decoder.character.index(" ") if " " in decoder.character else -1
                prior = space_prior(self.language)
                self._restricted[self.language] = _Restriction(columns, decoder, space, prior)
        return self._restricted[self.language]

    def __call__(self, pred: Sequence[Any], **kwargs: Any) -> Any:
        kwargs["return_word_box"] = False  # PaddleX's word boxes: ours come from positions
        restriction = self._restriction()
        probs = np.asarray(pred[0])
        if restriction is not None and probs.shape[-1] != len(self._characters):
            log.warning(
                "recogniser output has %d classes but its dictionary %d: not restricted",
                probs.shape[-1],
                len(self._characters),
            )
            return _with_positions(self._decoder(pred, **kwargs), probs, kwargs)
        if probs.ndim == 3 and _is_plain_ctc(self._decoder):
            return self._decode(probs, restriction, kwargs)
        if restriction is None:
            return _with_positions(self._decoder(pred, **kwargs), probs, kwargs)
        allowed = probs[..., restriction.columns]  # a copy: safe to change
        if allowed.ndim == 3:
            for row in allowed:
                best = row.argmax(axis=-1)
                probability = np.take_along_axis(row, best[:, None], axis=-1)[:, 0]
                flips = restriction.space_flips(best, probability, row[:, restriction.space])
                if flips is not None:
                    accept, boosted = flips
                    row[accept, restriction.space] = boosted[accept]
        decoded = restriction.decoder([allowed, *pred[1:]], **kwargs)
        return _with_positions(decoded, allowed, kwargs)

    def _decode(
        self, probs: npt.NDArray[np.float32], restriction: _Restriction | None, kwargs: Any
    ) -> tuple[list[str], list[float]]:
        """PaddleX's CTC decoding (best character per frame; blanks and repeats dropped; the
        mean probability of the characters kept), over the allowed characters with the space
        prior applied, each text a DecodedText; one pass per line instead of PaddleX's
        decoder plus a second for the positions (a tenth of a millisecond less per line)."""
        characters = self._characters if restriction is None else restriction.decoder.character
        ratios = kwargs.get("wh_ratio_list") or []
        widest = float(kwargs.get("max_wh_ratio") or 0.0)
        texts: list[str] = []
        scores: list[float] = []
        for index, line in enumerate(probs):
            row = line if restriction is None else restriction.allowed(line)
            best = row.argmax(axis=-1)
            probability = np.take_along_axis(row, best[:, None], axis=-1)[:, 0]
            if restriction is not None:
                flips = restriction.space_flips(best, probability, row[:, restriction.space])
                if flips is not None:
                    accept, boosted = flips
                    # as the argmax over the boosted row picks: the space unless it only
                    # ties with a character before it in the dictionary
                    space = accept & ((boosted > probability) | (restriction.space < best))
                    best = np.where(space, restriction.space, best)
                    probability = np.where(accept, boosted, probability)
            kept = best != 0
            kept[1:] &= best[1:] != best[:-1]
            columns = np.flatnonzero(kept)
            text = "".join([characters[i] for i in best[columns].tolist()])
            scores.append(float(probability[columns].mean()) if columns.size else 0.0)
            frames = float(line.shape[0])
            if index < len(ratios) and widest > 0:
                frames *= float(ratios[index]) / widest  # the rest is padding
            if len(columns) != len(text):  # a dictionary entry of several characters
                texts.append(text)
            else:
                texts.append(
                    DecodedText(text, columns.tolist(), frames, probability[columns].tolist())
                )
        return texts, scores


def _is_plain_ctc(decoder: Any) -> bool:
    """PaddleX's own CTC decoder, which `_decode` reproduces (not a subclass that reorders
    the text, such as right-to-left models')."""
    return type(decoder).__name__ == "CTCLabelDecode" and not getattr(decoder, "reverse", False)


def _with_positions(decoded: Any, probs: npt.NDArray[Any], kwargs: dict[str, Any]) -> Any:
    """The decoder's (texts, scores) with each text a DecodedText that knows at which frame
    each character starts: the frames the CTC decoder kept (not blank, not a repeat of the
    frame before), as it chose them. A text whose characters do not match those frames one
    to one (a dictionary entry of several characters) stays a plain string."""
    texts, scores = decoded
    if probs.ndim != 3 or len(texts) != probs.shape[0]:
        return decoded
    best = probs.argmax(axis=-1)
    best_probability = probs.max(axis=-1)
    ratios = kwargs.get("wh_ratio_list") or []
    widest = float(kwargs.get("max_wh_ratio") or 0.0)
    positioned = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            positioned.append(text)
            continue
        row = best[index]
        kept = row != 0
        kept[1:] &= row[1:] != row[:-1]
        columns = np.flatnonzero(kept)
        frames = float(row.shape[0])
        if index < len(ratios) and widest > 0:
            frames *= float(ratios[index]) / widest  # the rest is padding
        if len(columns) != len(text):
            positioned.append(text)
            continue
        positioned.append(
            DecodedText(text, columns.tolist(), frames, best_probability[index, columns].tolist())
        )
    return positioned, scores


@dataclass(frozen=True)
class _Restriction:
    """A language's dictionary columns, a decoder that knows only them, and where the space
    is among them (-1: nowhere) with its prior."""

    columns: npt.NDArray[np.intp]
    decoder: Any
    space: int
    space_prior: float

    @cached_property
    def runs(self) -> list[tuple[int, int]]:
        """The columns as runs of neighbours: the Latin letters and symbols are the first
        few hundred entries of PaddleOCR's dictionaries, the space the last, so `en` is 3
        runs, which `allowed` copies 3x faster than it gathers 557 single columns."""
        breaks = (np.flatnonzero(np.diff(self.columns) != 1) + 1).tolist()
        starts, ends = [0, *breaks], [*breaks, len(self.columns)]
        return [
            (int(self.columns[a]), int(self.columns[b - 1]) + 1)
            for a, b in zip(starts, ends, strict=True)
        ]

    def allowed(self, probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The allowed columns of (frames, classes) probabilities, as a new array."""
        if len(self.runs) > MAX_RUNS:
            return probs[:, self.columns]
        return np.concatenate([probs[:, start:end] for start, end in self.runs], axis=1)

    @cached_property
    def kinds(self) -> dict[str, npt.NDArray[np.bool_]]:
        """Per column (column 0 is the CTC blank): punctuation a space never precedes or
        follows in running text, the full stop and lower-case letters."""
        chars = [str(c) if i > 0 else "" for i, c in enumerate(self.decoder.character)]
        return {
            "no_space_before": np.array([c != "" and c in _NO_SPACE_BEFORE for c in chars]),
            "no_space_after": np.array([c != "" and c in _NO_SPACE_AFTER for c in chars]),
            "stop": np.array([c == "." for c in chars]),
            "lower": np.array([c.islower() for c in chars]),
        }

    def space_flips(
        self,
        best: npt.NDArray[np.intp],
        probability: npt.NDArray[np.float32],
        space_probability: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]] | None:
        """Where one line's space prior turns a frame into a space, and the space's boosted
        probability; None when it turns none, or the language has no prior. `best` and
        `probability` are each frame's best column and its probability.

        The prior applies except where running text has no space: before a colon, comma,
        full stop or closing bracket, after an opening bracket, around a slash, between a
        full stop and a lower-case letter. There the model's own reading stands
        ("https://", "obj.onLoad", "std::fabs", "[...]"): the prior had invented spaces
        around punctuation in technical text, while between words and after punctuation it
        restores the spaces the model drops ("THANK YOUFOR")."""
        if self.space < 0 or self.space_prior == 1.0:
            return None
        boosted = np.minimum(space_probability * self.space_prior, 1.0)
        # where the best reading is not a space, its character is the best of the others
        flips = (boosted >= probability) & (best != self.space)
        if not flips.any():
            return None
        kinds = self.kinds
        count = best.shape[0]
        is_char = (best != 0) & (best != self.space)
        frames = np.arange(count)
        # the character read last before each frame, and first after it (-1: none) ...
        last = np.maximum.accumulate(np.where(is_char, frames, -1))
        following = np.minimum.accumulate(np.where(is_char, frames, count)[::-1])[::-1]
        # ... strictly before and after it (the frame itself would become the space)
        last = np.concatenate(([-1], last[:-1]))
        following = np.concatenate((following[1:], [count]))
        before = np.where(last >= 0, best[np.maximum(last, 0)], 0)
        after = np.where(following < count, best[np.minimum(following, count - 1)], 0)
        unspaced = (
            kinds["no_space_after"][before]
            | kinds["no_space_before"][after]
            | (kinds["stop"][before] & kinds["lower"][after])
        )
        return flips & ~unspaced, boosted
