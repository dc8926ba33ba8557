"""Streaming reader of catalog uploads (CSV with a header, or JSON Lines).

It reads a binary stream in blocks and yields one ``Row`` per record, so memory stays flat
whatever the size of the file: one block, one physical line (bounded) and one CSV record
(bounded in bytes, whatever its number of fields or lines) at a time. Nothing here knows Flask or Redis.

``open_catalog(stream, options)`` sniffs the head of the stream and raises ``CatalogRefused``
when the upload is not a catalog at all (binary data, a JSON document, a CSV header without
the text column, ...). Otherwise it returns a ``CatalogReader`` whose iteration yields rows.

Bad rows do not stop the reading: each becomes a ``Row`` with ``error`` set (``code: detail``)
and ``text`` None. Codes: ``empty_text``, ``too_long``, ``malformed_csv``, ``missing_field``,
``invalid_json``, ``missing_text``, ``invalid_encoding``, ``line_too_long``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 1 << 16
SNIFF_BYTES = 1 << 16
MAX_ID_LENGTH = 256

# surrogateescape'd bytes (\udc80-\udcff) and lone surrogates from JSON escapes ("\ud800"): both
# cannot be encoded as UTF-8 (Redis), so they mark the row invalid
_SURROGATE = re.compile("[\ud800-\udfff]")

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


class _TextLines:
    """The decoded physical lines of a CSV upload for ``csv.reader``, with a byte budget per record.

    ``csv.reader`` bounds each field but not the number of fields, and a quoted field may span
    lines: without a budget one record could grow with the whole upload. ``start_record()`` is
    called before each record; a line that would take the record past ``budget`` bytes is held
    back (it starts the next record) and ``csv.Error`` is raised, which ends the record as a
    row error. A line alone is never over the budget (lines are at most ``budget`` bytes).
    """

    def __init__(self, lines: _Lines, budget: int):
        self.lines = lines
        self.budget = budget
        self.record_bytes = 0
        self.over_budget = False
        self.cut = False  # a line of the current record was cut (line_too_long)
        self._held: tuple[bytes, bool] | None = None

    def start_record(self) -> None:
        self.record_bytes = 0
        self.over_budget = False
        self.cut = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self._held is not None:
            raw, truncated = self._held
            self._held = None
        else:
            raw = next(self.lines)
            truncated = self.lines.truncated
        if self.record_bytes and self.record_bytes + len(raw) > self.budget:
            self._held = (raw, truncated)
            self.over_budget = True
            raise csv.Error(f"a record of more than {self.budget} bytes (an unclosed quote?)")
        self.record_bytes += len(raw)
        self.cut = self.cut or truncated
        # each line decoded alone: b"\n" never occurs inside a UTF-8 character, so no decoder state
        # crosses lines (a character cut with a long line or at the end of the file is reported
        # as invalid, never carried into the next row or dropped)
        return raw.decode("utf-8", "surrogateescape")


def _clean_id(ident) -> str | None:
    """An id as stored: a string of at most ``MAX_ID_LENGTH`` characters that encodes as UTF-8."""
    if ident is None:
        return None
    ident = str(ident)[:MAX_ID_LENGTH]
    if not ident.isascii() and _SURROGATE.search(ident):
        ident = _SURROGATE.sub("\ufffd", ident)
    return ident


def encodable(row: Row) -> Row:
    """``row``, or an ``invalid_encoding`` error row if a field cannot be encoded as UTF-8.

    A backstop for the storage: the readers already report such rows."""
    fields = (row.id, row.text, row.error)
    if all(f is None or f.isascii() or not _SURROGATE.search(f) for f in fields):
        return row
    return Row(row.row, _clean_id(row.id), None, "invalid_encoding: the row is not valid UTF-8")


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
        ident = _clean_id(ident)
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
        return Row(self.rows, _clean_id(ident), None, error)

    def __iter__(self) -> Iterator[Row]:
        raise NotImplementedError


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _looks_like_json_lines(head: bytes, complete: bool) -> bool:
    """Whether ``head`` (the upload's start; ``complete``: the whole upload) may be JSON Lines.

    A bad first line is a row error like any other, so the upload is refused only when its start
    clearly is something else: no line of it is a JSON object, and the first line does not start
    like one either, or is a lone ``{`` (an indented JSON document).
    """
    lines = [ln.strip() for ln in head.splitlines()]
    if not complete and lines:
        lines.pop()  # the last line may continue beyond the head
    first = next((ln for ln in lines if ln), None)
    if first is None:  # the first line is longer than the head: judge its start only
        return head.lstrip()[:1] == b"{"
    if first.startswith(b"{") and first != b"{":
        return True
    return any(_is_object(ln) for ln in lines if ln.startswith(b"{"))


class JsonLinesReader(CatalogReader):
    """One JSON object per line: ``{"id": ..., "text": ...}`` (or the configured keys)."""

    format = "jsonl"

    def __init__(self, stream, head: bytes, options: Options):
        super().__init__(stream, head, options)
        if not _looks_like_json_lines(head, complete=len(head) < SNIFF_BYTES):
            raise CatalogRefused(
                "not-a-catalog", "no line of the upload's start is a JSON object: not a JSON Lines catalog"
            )

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
        # a record may take as many bytes as the longest line: room for a text at its limit
        # and other columns, a bound on the memory of any record
        self._text_lines = _TextLines(self.lines, budget=self.lines.max_bytes)
        csv.field_size_limit(self.field_limit)
        self.reader = csv.reader(self._text_lines, strict=True)
        try:
            self._text_lines.start_record()
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
        reader, lines = self.reader, self._text_lines
        while True:
            line_before = reader.line_num
            lines.start_record()
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if lines.cut:
                    detail = f"line_too_long: a line of more than {self.lines.max_bytes} bytes"
                else:
                    detail = f"malformed_csv: {exc} (lines {line_before + 1}-{reader.line_num})"
                yield self._error(None, detail)
                continue
            if lines.cut:  # the record parsed, but from a line cut short: its fields are not the row's
                yield self._error(None, f"line_too_long: a line of more than {self.lines.max_bytes} bytes")
                continue
            if not rec or (len(rec) == 1 and not rec[0].strip() and len(self.header) > 1):
                continue  # blank line
            ident = rec[self.id_idx] if self.id_idx is not None and self.id_idx < len(rec) else None
            if len(rec) <= self.needed:
                yield self._error(ident, f"missing_field: {len(rec)} fields, the header has {len(self.header)}")
                continue
            yield self._row(ident or None, self._text_of(rec))
