"""`ocr-server`: parse the configuration, set up logging, serve."""

from __future__ import annotations

from ocr_server.config import parse_args
from ocr_server.telemetry.logs import configure as configure_logging


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    configure_logging(config.log_level, config.log_format)
    from ocr_server.app import serve  # after logging, so start-up messages show

    serve(config)


if __name__ == "__main__":
    main()
