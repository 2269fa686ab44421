"""`ocr-server`: parse the configuration, set up logging, serve."""

from __future__ import annotations

import logging

from ocr_server.config import parse_args


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from ocr_server.app import serve  # after logging, so start-up messages show

    serve(config)


if __name__ == "__main__":
    main()
