"""Unit tests of the pure parts: scheduling, page selection, type detection, tokens, layout."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ocr_server.api.auth import TokenRegistry, parse_token_spec, read_tokens_file
from ocr_server.backends.local.checkpoints import Checkpointer
from ocr_server.capabilities import Capabilities
from ocr_server.documents import DocumentLimits, detect_type, inspect_image, parse_page_selection
from ocr_server.engines.base import RecognizedLine, RecognizedWord
from ocr_server.engines.profiles import BUILTIN_PROFILES, load_profiles
from ocr_server.errors import InvalidDocumentError, InvalidSettingsError
from ocr_server.languages.routing import LanguageRouter, Reader
from ocr_server.layout import order_lines, page_text
from ocr_server.models import PageResult, PageWarning
from ocr_server.tasks.scheduler import Scheduler


def drain(scheduler: Scheduler, finish: bool = True) -> list[tuple[str, int]]:
    order = []
    while (picked := scheduler.next_page()) is not None:
        order.append(picked)
        if finish:
            scheduler.page_finished(*picked)
    return order


def test_scheduler_shares_pages_between_started_tasks() -> None:
    scheduler = Scheduler(max_active=2)
    scheduler.enqueue("long", [1, 2, 3, 4])
    scheduler.enqueue("short", [1])
    scheduler.enqueue("late", [1])
    # a task that starts joins the round at the back: neither starves the other
    assert drain(scheduler) == [
        ("long", 1),
        ("long", 2),
        ("short", 1),
        ("long", 3),
        ("late", 1),
        ("long", 4),
    ]


def test_scheduler_does_not_starve_a_long_task() -> None:
    scheduler = Scheduler(max_active=2)
    scheduler.enqueue("long", list(range(1, 11)))
    for index in range(10):
        scheduler.enqueue(f"short{index}", [1])
    order = drain(scheduler)
    long_positions = [i for i, (task, _) in enumerate(order) if task == "long"]
    assert long_positions == [0, *range(1, 19, 2)]  # every other page


def test_scheduler_queue_positions_requeue_and_remove() -> None:
    scheduler = Scheduler(max_active=1)
    for name in ("a", "b", "c"):
        scheduler.enqueue(name, [1, 2])
    assert [scheduler.queue_position(n) for n in "abc"] == [1, 2, 3]
    assert scheduler.next_page() == ("a", 1)
    assert [scheduler.queue_position(n) for n in "abc"] == [0, 1, 2]
    scheduler.requeue_page("a", 1)
    assert scheduler.next_page() == ("a", 1)  # a lost page runs again first
    scheduler.remove("b")
    assert scheduler.queue_position("c") == 1
    assert scheduler.page_finished("a", 1) is False


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("", 3, [1, 2, 3]),
        ("2", 3, [2]),
        ("1-2, 3", 5, [1, 2, 3]),
        ("4-", 5, [4, 5]),
        ("-2", 5, [1, 2]),
        ("3,1,3", 3, [1, 3]),
    ],
)
def test_page_selection(spec: str, count: int, expected: list[int]) -> None:
    assert parse_page_selection(spec, count) == expected


@pytest.mark.parametrize("spec", ["0", "3-2", "7", "1,,2", "a-b", "1-99"])
def test_page_selection_errors(spec: str) -> None:
    with pytest.raises(InvalidSettingsError):
        parse_page_selection(spec, 5)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"BM", "bmp"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"GIF89a", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"%PDF-1.4", "pdf"),
    ],
)
def test_detect_type_from_bytes(head: bytes, kind: str) -> None:
    assert detect_type(head + b"\x00" * 32) == kind


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + (chunk(b"IEND", b""))
    )


def test_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(InvalidDocumentError, match="100000x100000"):
        inspect_image(png_header(100_000, 100_000), "png", DocumentLimits())


def test_png_triage_agrees_with_pillow_verify() -> None:
    """Submit walks a PNG's chunks itself (CRCs up to IEND) instead of Pillow's verify(),
    which copies every chunk: on 1,500 damaged copies of three PNGs (bytes changed, cut short,
    junk appended) both accept and refuse exactly the same files."""
    rng = random.Random(11)
    palette = Image.new("P", (50, 40), 3)
    seeds = [
        encode_png(Image.new("L", (300, 100), 255)),
        encode_png(palette, transparency=3),
        encode_png(Image.effect_noise((160, 120), 60).convert("RGB")),
    ]
    for seed in seeds:
        for _ in range(500):
            damaged = bytearray(seed)
            how = rng.random()
            if how < 0.45:
                for _ in range(rng.randint(1, 3)):
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            elif how < 0.8:
                del damaged[rng.randrange(len(damaged)) :]
            else:
                damaged += rng.randbytes(rng.randint(1, 40))
            ours = _accepted(lambda d=bytes(damaged): inspect_image(d, "png", DocumentLimits()))
            assert ours == _accepted(lambda d=bytes(damaged): _pillow_verify(d)), bytes(damaged)


def encode_png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _pillow_verify(data: bytes) -> None:
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        image.verify()


def _accepted(check: Callable[[], object]) -> bool:
    try:
        check()
    except Exception:  # Pillow raises many kinds; ours InvalidDocumentError
        return False
    return True


def test_page_result_json_is_asdicts_and_reads_back() -> None:
    """The page result's JSON (built field by field for speed) is byte for byte what
    dataclasses.asdict gave, so stored pages read the same; and it reads back whole."""
    square = ((1.5, 2.0), (30.25, 2.0), (30.25, 9.0), (1.5, 9.0))
    word = RecognizedWord("fox", 0.97, square)
    page = PageResult(
        page_number=2,
        width=400,
        height=200,
        text="the fox\n",
        lines=(RecognizedLine("the fox", 0.9, square, (word, word)), RecognizedLine("", 0.1, ())),
        x_dpi=200.0,
        y_dpi=150.0,
        warnings=(PageWarning("LOW_CONFIDENCE", 'a "quoted" reason'),),
        rotation=90,
    )
    assert page.to_json() == json.dumps(dataclasses.asdict(page), separators=(",", ":"))
    assert PageResult.from_json(page.to_json()) == page


def test_checkpoints_run_in_their_own_thread(tmp_path: Path) -> None:
    """The write-ahead log is checkpointed by the checkpoint thread after every N writes
    counted, so it starts over instead of growing (SQLite's own checkpoints switched off
    here), and nothing written is lost."""
    database = tmp_path / "cache.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    checkpoints = Checkpointer({"t": database}, writes=50)
    try:
        for batch in range(1, 11):
            for _ in range(50):
                writer.execute("INSERT INTO t VALUES (?)", (bytes(3000),))
                checkpoints.wrote("t")
            deadline = time.monotonic() + 30
            while checkpoints.rounds < batch and time.monotonic() < deadline:
                time.sleep(0.01)
            assert checkpoints.rounds == batch
        # 500 rows of 3 kB: about 2 MB of log without checkpoints; one batch's with them
        assert Path(f"{database}-wal").stat().st_size < 1_000_000
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (500,)
    finally:
        checkpoints.stop()
        writer.close()


def test_token_registry(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# comment\nacme:{digest}\n")
    registry = TokenRegistry(read_tokens_file(tokens_file) + parse_token_spec("beta=other"))
    assert registry.tenant_for("s3cret") == "acme"
    assert registry.tenant_for("other") == "beta"
    assert registry.tenant_for("s3cret ") is None
    assert registry.tenant_from_metadata([("authorization", "Bearer other")]) == "beta"
    assert registry.tenant_from_metadata([("authorization", "Basic other")]) is None
    tokens_file.write_text("acme:plaintext-token\n")
    with pytest.raises(ValueError, match="sha256"):
        read_tokens_file(tokens_file)


def test_settings_resolution() -> None:
    reads = frozenset({"en", "zh"})
    router = LanguageRouter([Reader("fast", "paddleocr", reads, reads)], "fast")
    capabilities = Capabilities(BUILTIN_PROFILES, ("fast",), "fast", router)
    settings = capabilities.resolve("", "", "", 0)
    assert (settings.language, settings.profile, settings.dpi) == ("en", "fast", 200)
    assert capabilities.resolve("ch", "", "", 300).language == "zh"
    with pytest.raises(InvalidSettingsError, match="installed: en, zh"):
        capabilities.resolve("fr", "", "", 0)
    with pytest.raises(InvalidSettingsError, match="unknown language 'xx'; installed: en, zh"):
        capabilities.resolve("xx", "", "", 0)
    with pytest.raises(InvalidSettingsError, match="not installed on this server"):
        capabilities.resolve("en", "accurate", "", 0)
    with pytest.raises(InvalidSettingsError, match="out of range"):
        capabilities.resolve("en", "", "", 10)


def test_profiles_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(
        '{"mine": {"engine": "onnxruntime", "det_model": "D", "rec_model": "R",'
        ' "det_dir": "/m/d", "det_options": {"text_det_thresh": 0.2}}}'
    )
    profiles = load_profiles(path)
    assert set(BUILTIN_PROFILES) < set(profiles)
    assert profiles["mine"].model_dirs(Path("/base")) == (Path("/m/d"), Path("/base/R"))
    path.write_text('{"bad": {"engine": "tensorflow"}}')
    with pytest.raises(ValueError, match="engine must be one of"):
        load_profiles(path)


def line(text: str, x: float, y: float, w: float = 50, h: float = 10) -> RecognizedLine:
    return RecognizedLine(text, 0.9, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def test_reading_order_rows_left_to_right() -> None:
    lines = [
        line("total", 10, 100),
        line("9.00", 200, 102),
        line("header", 10, 10),
        line("right", 200, 9),
    ]
    assert page_text(order_lines(lines)) == "header right\ntotal 9.00"
