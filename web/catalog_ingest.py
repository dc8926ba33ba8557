"""Streaming reader of catalog uploads (CSV with a header, or JSON Lines).

It reads a binary stream in blocks and yields one ``Row`` per record, so memory stays flat
whatever the size of the file: one block, one physical line (bounded) and one CSV record
(bounded by the field limit) at a time. Nothing here knows Flask or Redis.

``open_catalog(stream, options)`` sniffs the head of the stream and raises ``CatalogRefused``
when the upload is not a catalog at all (binary data, a JSON document, a CSV header without
the text column, ...). Otherwise it returns a ``CatalogReader`` whose iteration yields rows.

Bad rows do not stop the reading: each becomes a ``Row`` with ``error`` set (``code: detail``)
and ``text`` None. Codes: ``empty_text``, ``too_long``, ``malformed_csv``, ``missing_field``,
``invalid_json``, ``missing_text``, ``invalid_encoding``, ``line_too_long``.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 1 << 16
SNIFF_BYTES = 1 << 16
MAX_ID_LENGTH = 256

_SURROGATE = re.compile("[\udc80-\udcff]")

#: magic bytes of formats people upload by mistake
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (or an .xlsx/.docx file)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls/.doc)"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ", "xz-compressed data"),
    (b"SQLite format 3", "an SQLite database"),
)


class CatalogRefused(Exception):
    """The upload is not a catalog this service reads. ``code`` names the problem."""

    def __init__(self, code: str, detail: str, **extra):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class Options:
    format: str | None = None  # "csv" | "jsonl" | None (sniff)
    text_column: str | None = None
    title_column: str | None = None
    description_column: str | None = None
    id_column: str | None = None
    max_text_length: int = 20000


@dataclass(frozen=True)
class Row:
    row: int  # 1-based position among the data records
    id: str | None
    text: str | None
    error: str | None = None

    def as_list(self) -> list:
        return [self.row, self.id, self.text, self.error]


class _Lines:
    """Physical lines (bytes, with their newline) of a binary stream, each at most ``max_bytes``.

    A longer line is cut: its first ``max_bytes`` are returned (``truncated`` set) and the rest,
    up to the next newline, is discarded while reading.
    """

    def __init__(self, stream, head: bytes, max_bytes: int):
        self.stream = stream
        self.buf = bytearray(head)
        self.eof = False
        self.max_bytes = max_bytes
        self.truncated = False
        self.bytes_read = len(head)

    def _fill(self) -> bool:
        if self.eof:
            return False
        block = self.stream.read(BLOCK)
        if not block:
            self.eof = True
            return False
        self.bytes_read += len(block)
        self.buf += block
        return True

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        self.truncated = False
        start = 0
        while True:
            nl = self.buf.find(b"\n", start)
            if nl >= 0 and nl < self.max_bytes:
                line = bytes(self.buf[: nl + 1])
                del self.buf[: nl + 1]
                return line
            if nl >= 0 or len(self.buf) >= self.max_bytes:
                return self._cut()
            start = len(self.buf)
            if not self._fill():
                if not self.buf:
                    raise StopIteration
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def _cut(self) -> bytes:
        line = bytes(self.buf[: self.max_bytes])
        del self.buf[: self.max_bytes]
        self.truncated = True
        while True:  # discard up to and including the next newline
            nl = self.buf.find(b"\n")
            if nl >= 0:
                del self.buf[: nl + 1]
                return line
            self.buf.clear()
            if not self._fill():
                return line


def _read_head(stream) -> bytes:
    head = bytearray()
    while len(head) < SNIFF_BYTES:
        block = stream.read(SNIFF_BYTES - len(head))
        if not block:
            break
        head += block
    return bytes(head)


def _looks_binary(head: bytes) -> str | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    sample = head[:8192]
    if b"\x00" in sample:
        return "binary data (NUL bytes; UTF-16 text is not supported, send UTF-8)"
    text = sample.decode("utf-8", errors="replace")
    # cut at most 3 bytes of a character split at the end of the sample
    bad = text[:-2].count("\ufffd")
    if sample and bad > max(8, len(sample) // 50):
        return "binary data, or text that is not UTF-8"
    return None


def sniff_format(head: bytes, declared: str | None) -> str:
    """``csv`` or ``jsonl`` from the declared format, else from the first non-blank byte."""
    if declared:
        return declared
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "jsonl" if first == b"{" else "csv"


def open_catalog(stream, options: Options) -> CatalogReader:
    """Sniff the upload; raise ``CatalogRefused`` if it is not a catalog. Reads the head only."""
    head = _read_head(stream)
    if not head.strip():
        raise CatalogRefused("empty-catalog", "the upload is empty")
    what = _looks_binary(head)
    if what:
        raise CatalogRefused("not-a-catalog", f"the upload is {what}, not a CSV or JSON Lines catalog")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    fmt = sniff_format(head, options.format)
    stripped = head.lstrip()
    if fmt == "csv" and stripped[:1] == b"[":
        raise CatalogRefused("not-a-catalog", "the upload is a JSON array, not a CSV or JSON Lines catalog")
    if fmt == "csv" and stripped[:1] == b"<":
        raise CatalogRefused("not-a-catalog", "the upload looks like HTML or XML, not a CSV or JSON Lines catalog")
    if fmt == "jsonl":
        return JsonLinesReader(stream, head, options)
    return CsvReader(stream, head, options)


class CatalogReader:
    format = ""

    def __init__(self, stream, head: bytes, options: Options):
        self.options = options
        self.max_text = options.max_text_length
        # a field may be a few times the text limit (it is then reported as too long); beyond
        # that it is an unclosed quote swallowing lines, and the record is cut off
        self.field_limit = max(4 * self.max_text, 1 << 16)
        self.lines = _Lines(stream, head, max_bytes=4 * self.field_limit)
        self.rows = 0

    @property
    def bytes_read(self) -> int:
        return self.lines.bytes_read

    def _row(self, ident, text) -> Row:
        self.rows += 1
        if ident is not None:
            ident = str(ident)[:MAX_ID_LENGTH]
            if not ident.isascii() and _SURROGATE.search(ident):
                ident = ident.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if text is None:
            return Row(self.rows, ident, None, "missing_text: the row has no text")
        if not isinstance(text, str):
            return Row(self.rows, ident, None, f"missing_text: text is {type(text).__name__}, not a string")
        if not text.isascii() and _SURROGATE.search(text):  # isascii(): O(1), most texts
            return Row(self.rows, ident, None, "invalid_encoding: the row is not valid UTF-8")
        if not text.strip():
            return Row(self.rows, ident, None, "empty_text: the text is empty")
        if len(text) > self.max_text:
            return Row(self.rows, ident, None, f"too_long: {len(text)} characters (limit {self.max_text})")
        return Row(self.rows, ident, text)

    def _error(self, ident, error: str) -> Row:
        self.rows += 1
        return Row(self.rows, ident, None, error)

    def __iter__(self) -> Iterator[Row]:
        raise NotImplementedError


class JsonLinesReader(CatalogReader):
    """One JSON object per line: ``{"id": ..., "text": ...}`` (or the configured keys)."""

    format = "jsonl"

    def __init__(self, stream, head: bytes, options: Options):
        super().__init__(stream, head, options)
        first = next((ln for ln in head.splitlines() if ln.strip()), b"")
        try:
            obj = json.loads(first)
        except ValueError:
            obj = None
        # the whole first line may be longer than the head: then only refuse clear non-JSON
        if not isinstance(obj, dict) and len(first) < len(head):
            raise CatalogRefused("not-a-catalog", "the first line is not a JSON object: not a JSON Lines catalog")

    def _text_of(self, obj: dict):
        o = self.options
        if o.title_column:
            parts = [obj.get(o.title_column), obj.get(o.description_column or "description")]
            if parts[0] is None:
                return None
            return " ".join(str(p).strip() for p in parts if p is not None and str(p).strip())
        return obj.get(o.text_column or "text")

    def __iter__(self) -> Iterator[Row]:
        id_key = self.options.id_column or "id"
        for raw in self.lines:
            if self.lines.truncated:
                yield self._error(None, f"line_too_long: more than {self.lines.max_bytes} bytes")
                continue
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield self._error(None, "invalid_encoding: the line is not valid UTF-8")
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:
                yield self._error(None, f"invalid_json: {str(exc)[:200]}")
                continue
            if not isinstance(obj, dict):
                yield self._error(None, f"invalid_json: a line must hold a JSON object, not {type(obj).__name__}")
                continue
            ident = obj.get(id_key)
            if isinstance(ident, dict | list):
                ident = json.dumps(ident)
            yield self._row(ident, self._text_of(obj))


class CsvReader(CatalogReader):
    """CSV (RFC 4180) with a header row naming the columns."""

    format = "csv"

    def __init__(self, stream, head: bytes, options: Options):
        super().__init__(stream, head, options)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._text_lines = (decoder.decode(b) for b in self.lines)
        csv.field_size_limit(self.field_limit)
        self.reader = csv.reader(self._text_lines, strict=True)
        try:
            header = next(self.reader)
        except StopIteration:
            raise CatalogRefused("empty-catalog", "the upload has no header row") from None
        except csv.Error as exc:
            raise CatalogRefused("not-a-catalog", f"the header row is not valid CSV: {exc}") from None
        self.header = [h.strip() for h in header]
        if any(_SURROGATE.search(h) for h in self.header):
            raise CatalogRefused("not-a-catalog", "the header row is not UTF-8 text")
        self._resolve_columns()

    def _col(self, name: str, param: str) -> int:
        try:
            return self.header.index(name)
        except ValueError:
            raise CatalogRefused(
                "missing-column",
                f"the CSV header has no column {name!r} (set by {param}); columns: {self._shown()}",
                columns=self.header[:50],
            ) from None

    def _shown(self) -> str:
        cols = ", ".join(repr(h[:40]) for h in self.header[:20])
        return cols + (", ..." if len(self.header) > 20 else "")

    def _resolve_columns(self) -> None:
        o = self.options
        self.text_idx = self.title_idx = self.desc_idx = self.id_idx = None
        if o.text_column:
            self.text_idx = self._col(o.text_column, "text_column")
        elif o.title_column:
            self.title_idx = self._col(o.title_column, "title_column")
            if o.description_column:
                self.desc_idx = self._col(o.description_column, "description_column")
            elif "description" in self.header:
                self.desc_idx = self.header.index("description")
        elif o.description_column:
            raise CatalogRefused("missing-column", "description_column needs title_column too")
        elif "text" in self.header:
            self.text_idx = self.header.index("text")
        elif "title" in self.header:
            self.title_idx = self.header.index("title")
            self.desc_idx = self.header.index("description") if "description" in self.header else None
        else:
            raise CatalogRefused(
                "missing-column",
                f"the CSV header has no 'text' column (nor 'title' + 'description'); columns: {self._shown()}. "
                "Name the column with ?text_column= (or ?title_column=&description_column=)",
                columns=self.header[:50],
            )
        if o.id_column:
            self.id_idx = self._col(o.id_column, "id_column")
        elif "id" in self.header:
            self.id_idx = self.header.index("id")
        self.needed = max(i for i in (self.text_idx, self.title_idx, self.id_idx) if i is not None)

    def _text_of(self, rec: list[str]):
        if self.text_idx is not None:
            return rec[self.text_idx]
        parts = [rec[self.title_idx]]
        if self.desc_idx is not None and self.desc_idx < len(rec):
            parts.append(rec[self.desc_idx])
        return " ".join(p.strip() for p in parts if p.strip())

    def __iter__(self) -> Iterator[Row]:
        reader = self.reader
        while True:
            line_before = reader.line_num
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if self.lines.truncated:
                    detail = f"line_too_long: a line of more than {self.lines.max_bytes} bytes"
                else:
                    detail = f"malformed_csv: {exc} (lines {line_before + 1}-{reader.line_num})"
                yield self._error(None, detail)
                continue
            if not rec or (len(rec) == 1 and not rec[0].strip() and len(self.header) > 1):
                continue  # blank line
            ident = rec[self.id_idx] if self.id_idx is not None and self.id_idx < len(rec) else None
            if len(rec) <= self.needed:
                yield self._error(ident, f"missing_field: {len(rec)} fields, the header has {len(self.header)}")
                continue
            yield self._row(ident or None, self._text_of(rec))
