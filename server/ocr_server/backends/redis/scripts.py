"""The Lua scripts, each one atomic state change, loaded once per connection pool.

Each file in `lua/` gets `common.lua` prepended (its helpers and key names). A script is
flagged `#!lua` (Redis 7 / Valkey): by default Redis refuses it whole when it is out of memory
(`maxmemory`, `noeviction`), so nothing is half-written and Submit says RESOURCE_EXHAUSTED;
scripts that end tasks or give room back say `flags=allow-oom`, because ending work is how
memory comes back.
"""

from __future__ import annotations

from importlib import resources

import redis

from ocr_server.backends.redis.keys import GROUP

NAMES = (
    "reserve",
    "release",
    "admit",
    "next_page",
    "page_done",
    "page_lost",
    "release_page",
    "complete",
    "end",
    "expire",
    "renew",
)


def _source(name: str) -> str:
    folder = resources.files("ocr_server.backends.redis").joinpath("lua")
    common = folder.joinpath("common.lua").read_text()
    body = folder.joinpath(f"{name}.lua").read_text()
    shebang = "#!lua"
    if body.startswith("#!"):
        shebang, _, body = body.partition("\n")
    return f"{shebang}\n{common}\n{body}"


class Scripts:
    """Calls a script with the arguments every script takes first (prefix, now, group)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._prefix = prefix
        self._scripts = {name: client.register_script(_source(name)) for name in NAMES}

    def __call__(self, name: str, now: float, *args: bytes | str | int | float) -> object:
        return self._scripts[name](args=[self._prefix, repr(now), GROUP, *args])
