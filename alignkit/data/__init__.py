"""Records, their IO and the one tokenization/masking path.

Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "collate": "batching",
    "left_pad": "batching",
    "pack_greedy": "batching",
    "DEFAULT_CHAT_TEMPLATE": "chat",
    "Encoded": "chat",
    "TooLongError": "chat",
    "encode_example": "chat",
    "encode_messages": "chat",
    "encode_prompt": "chat",
    "encode_sft_record": "chat",
    "render": "chat",
    "to_messages": "chat",
    "DataError": "io",
    "LoadedRecords": "io",
    "read_records": "io",
    "validate_row": "io",
    "write_records": "io",
    "detect_kind": "records",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
