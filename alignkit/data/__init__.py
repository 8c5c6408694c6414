"""Records, their IO and the one tokenization/masking path."""

from alignkit.data.batching import collate, left_pad, pack_greedy
from alignkit.data.chat import (
    DEFAULT_CHAT_TEMPLATE,
    Encoded,
    TooLongError,
    encode_example,
    encode_messages,
    encode_prompt,
    encode_sft_record,
    render,
    to_messages,
)
from alignkit.data.io import DataError, LoadedRecords, read_records, validate_row, write_records
from alignkit.data.records import detect_kind

__all__ = [
    "DEFAULT_CHAT_TEMPLATE", "DataError", "Encoded", "LoadedRecords", "TooLongError", "collate",
    "detect_kind", "encode_example", "encode_messages", "encode_prompt", "encode_sft_record",
    "left_pad", "pack_greedy", "read_records", "render", "to_messages", "validate_row", "write_records",
]
