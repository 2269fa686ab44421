"""`python -m ocr_server.languages.packages ru,ko,sv`: the Debian packages holding Tesseract's
data for these languages, one a line, for `scripts/setup --languages`. Exits 2 naming a
language the catalog does not know."""

from __future__ import annotations

import sys

from ocr_server.languages.catalog import BY_CODE, UnknownLanguageError, parse


def debian_packages(languages: str) -> list[str]:
    """`tesseract-ocr-<name>` for each language of a list such as `ru,ko` or `ru+ko`."""
    return [f"tesseract-ocr-{BY_CODE[code].debian_name}" for code in parse(languages)]


def main(argv: list[str]) -> int:
    try:
        packages = debian_packages(",".join(argv))
    except UnknownLanguageError as exc:
        known = ", ".join(sorted(BY_CODE))
        print(f"unknown language {exc.tag!r}; known: {known}", file=sys.stderr)
        return 2
    print("\n".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
