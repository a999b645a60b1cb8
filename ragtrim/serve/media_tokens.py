"""The input tokens Anthropic bills for a Messages request's images and PDFs, estimated without decoding them.

No Claude tokenizer is available offline, and the gateway's text count (:func:`ragtrim.serve.messages_api.messages_view`)
reads an image or a PDF as nothing. This estimate is what the budget check and ``count_tokens``'s fallback add for them
(:func:`media_tokens`), from Anthropic's vision and PDF guides:

- An image costs about ``width * height / 750`` tokens once resized to the model's native resolution: a long edge of at
  most 1,568 px and about 1,600 tokens on earlier models; 2,576 px and ``ceil(w / 28) * ceil(h / 28)`` patches, at most
  about 4,784, on newer ones (Opus 4.7 and later). The estimate is the larger of the two (:func:`image_tokens`), the
  size read from the image's header (PNG, GIF, JPEG, WebP: :func:`image_size`); an image whose size cannot be read
  (a URL or Files API source, an unknown format) is :data:`IMAGE_CEILING`, the most one can cost.
- A PDF costs its pages' text (1,500-3,000 tokens a page) and each page as an image: :data:`PDF_PAGE_TOKENS` a page,
  its pages counted from its page objects (:func:`pdf_pages`); a PDF whose pages cannot be counted (a URL or Files API
  source, pages in compressed object streams) is :data:`PDF_MAX_PAGES` pages, the most a request may hold.

>>> image_tokens(1000, 1000), image_tokens(200, 200), image_tokens(8000, 8000) == IMAGE_CEILING
(1334, 64, True)
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ragtrim.serve.messages_api import is_media

# Earlier models' native resolution: the long edge and the tokens (width * height / 750) an image is resized within
STANDARD_EDGE, STANDARD_TOKENS, PIXELS_PER_TOKEN = 1568, 1600, 750
# Newer models' (Opus 4.7 and later): the long edge, the patch side and the patches an image is resized within
HIGH_EDGE, PATCH, HIGH_TOKENS = 2576, 28, 4784
# The most an image can cost (its size unknown)
IMAGE_CEILING = max(STANDARD_TOKENS, HIGH_TOKENS)
# A PDF page: its text (at most about 3,000 tokens) and the page as an image
PDF_PAGE_TOKENS = 3000 + IMAGE_CEILING
# The most pages a request's PDFs may hold: a PDF whose pages cannot be counted is taken to have them all
PDF_MAX_PAGES = 100
# How much of a base64 image is decoded to find its size (a JPEG's size follows its metadata, often tens of KB)
HEADER_CHARS = 256 * 1024
# Characters of text per token in a document's content source that also holds an image (its text is not counted
# elsewhere): fewer than any tokenizer's average, so the estimate is above the count
CHARS_PER_TOKEN = 3


def _scaled(width: int, height: int, edge: int) -> tuple[float, float]:
    """``width`` x ``height`` shrunk (aspect kept) so its long edge is at most ``edge``."""
    scale = min(1.0, edge / max(width, height))
    return width * scale, height * scale


def image_tokens(width: int, height: int) -> int:
    """The tokens an image of ``width`` x ``height`` px costs: the larger of the earlier models' estimate (resized within
    1,568 px, ``w * h / 750``, at most 1,600) and the newer models' (resized within 2,576 px, its 28 px patches, at most
    4,784); :data:`IMAGE_CEILING` for a size that is not one."""
    if width <= 0 or height <= 0:
        return IMAGE_CEILING
    w, h = _scaled(width, height, STANDARD_EDGE)
    standard = min(STANDARD_TOKENS, math.ceil(w * h / PIXELS_PER_TOKEN))
    w, h = _scaled(width, height, HIGH_EDGE)
    high = min(HIGH_TOKENS, math.ceil(w / PATCH) * math.ceil(h / PATCH))
    return max(standard, high)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """A JPEG's size: the first start-of-frame marker's (SOF0-SOF15 but DHT, JPG and DAC), its segments walked."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill bytes before a marker
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """A WebP's size from its first chunk: VP8X (the canvas), VP8L (lossless) or VP8 (lossy)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, GIF, JPEG or WebP from its first bytes; None for another format or a cut header.

    >>> image_size(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(4) + b"IHDR" + (640).to_bytes(4, "big") + (480).to_bytes(4, "big"))
    (640, 480)
    >>> image_size(b"GIF89a" + (32).to_bytes(2, "little") + (16).to_bytes(2, "little")), image_size(b"hello")
    ((32, 16), None)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _decoded(text: str, chars: int | None = None) -> bytes:
    """The bytes of base64 ``text`` (its first ``chars`` characters, whole quanta only); b"" when it is not base64."""
    head = text if chars is None else text[: chars - chars % 4]
    try:
        return base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return b""


_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")


def pdf_pages(data: bytes) -> int | None:
    """The pages of a PDF: the most its page tree roots count (``/Type /Pages ... /Count N``) or its page objects
    (``/Type /Page``) number; None when neither is readable (its objects in compressed object streams).

    >>> pdf_pages(b"%PDF-1.4 1 0 obj <</Type /Pages /Kids [2 0 R 3 0 R] /Count 2>> 2 0 obj <</Type /Page>> 3 0 obj <</Type/Page>>")
    2
    >>> pdf_pages(b"%PDF-1.7 stream ... endstream") is None
    True
    """
    counts = [int(a or b) for a, b in _COUNT.findall(data)]
    pages = max([*counts, len(_PAGE.findall(data))])
    return pages or None


def _source_data(block: Mapping[str, Any]) -> str | None:
    """A block's base64 ``source.data`` (None: another source, a URL or a Files API id)."""
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return str(source["data"])
    return None


def _image(block: Mapping[str, Any]) -> int:
    data = _source_data(block)
    size = image_size(_decoded(data, HEADER_CHARS)) if data is not None else None
    return image_tokens(*size) if size is not None else IMAGE_CEILING


def _document(block: Mapping[str, Any]) -> int:
    """A media document's tokens: a PDF's pages; a content source's images and text."""
    source = block.get("source") if isinstance(block.get("source"), Mapping) else {}
    if source.get("type") == "content" and isinstance(source.get("content"), list):
        parts = [b for b in source["content"] if isinstance(b, Mapping)]
        text = sum(len(str(b.get("text") or "")) for b in parts if b.get("type") == "text")
        return sum(_image(b) for b in parts if b.get("type") == "image") + math.ceil(text / CHARS_PER_TOKEN)
    data = _source_data(block)
    pages = pdf_pages(_decoded(data)) if data is not None else None
    return min(pages or PDF_MAX_PAGES, PDF_MAX_PAGES) * PDF_PAGE_TOKENS


def media_blocks(messages: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    """The media blocks (:func:`ragtrim.serve.messages_api.is_media`: an image, a PDF) of ``messages``, tool results'
    content included."""
    for item in messages:
        content = item.get("content") if isinstance(item, Mapping) else None
        for block in content if isinstance(content, list) else []:
            inner = block.get("content") if isinstance(block, Mapping) and block.get("type") == "tool_result" else None
            yield from (b for b in [block, *(inner if isinstance(inner, list) else [])] if is_media(b))


def media_tokens(messages: Sequence[Any]) -> int:
    """The tokens ``messages``' images and PDFs are estimated to cost (see the module docstring); 0 without any."""
    return sum(_image(b) if b.get("type") == "image" else _document(b) for b in media_blocks(messages))
