"""OCR engines: one small contract (`base.OcrEngine`), the PaddleOCR adapter, and
fault-injection engines for tests."""
