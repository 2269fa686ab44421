"""JSON: the OcrResult in the protobuf JSON mapping, with the proto's field names (what
`ocr recognize --format json` has always printed), so any protobuf library parses it back."""

from __future__ import annotations

from google.protobuf import json_format

from ocr.v1 import ocr_pb2

MEDIA_TYPE = "application/json"


def render(result: ocr_pb2.OcrResult) -> bytes:
    text = json_format.MessageToJson(result, preserving_proto_field_name=True, indent=1)
    return (text + "\n").encode("utf-8")
