"""The streaming catalog reader: formats, columns, per-row errors, refusals, bounded memory."""

from __future__ import annotations

import io

import pytest

from web.catalog_ingest import CatalogRefused, Options, open_catalog


class Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int = 7):
        self.data, self.pos, self.step = data, 0, step

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.step if n is None or n < 0 else min(n, self.step)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def rows(data: bytes, step: int = 7, **opts):
    return list(open_catalog(Trickle(data, step), Options(**opts)))


def test_csv_text_column_and_ids_in_order():
    data = b'id,text,price\na1,"Cotton shirt, blue",10\na2,"Multi\nline ""quoted"" text",3\n\n'
    out = rows(data)
    assert [(r.row, r.id, r.text, r.error) for r in out] == [
        (1, "a1", "Cotton shirt, blue", None),
        (2, "a2", 'Multi\nline "quoted" text', None),
    ]


def test_csv_title_description_and_named_columns():
    data = b"sku,name,desc\n1,Kettle,Steel 1.7 l\n2,Book,\n"
    out = rows(data, title_column="name", description_column="desc", id_column="sku")
    assert [(r.id, r.text) for r in out] == [("1", "Kettle Steel 1.7 l"), ("2", "Book")]
    out = rows(b"title,description\nLamp,LED desk lamp\n")
    assert out[0].text == "Lamp LED desk lamp"
    out = rows(b"body\nhello\n", text_column="body")
    assert out[0].text == "hello"


def test_csv_bad_rows_are_reported_per_row():
    long = "x" * 50
    data = (
        b"id,text\n1,good one\n2,\n3," + long.encode() + b'\n4,"broken"quote,\n5,bad \xff\xfe utf8\n6\n7,good again\n'
    )
    out = rows(data, max_text_length=20)
    codes = {r.row: (r.error or "").split(":")[0] for r in out}
    assert codes == {
        1: "",
        2: "empty_text",
        3: "too_long",
        4: "malformed_csv",
        5: "invalid_encoding",
        6: "missing_field",
        7: "",
    }
    assert out[-1].text == "good again" and out[-1].id == "7"


def test_unclosed_quote_is_cut_off_not_swallowing_the_file():
    body = b"".join(b"%d,text number %d\n" % (i, i) for i in range(20000))
    data = b'id,text\n0,"never closed\n' + body
    out = rows(data, step=4096, max_text_length=100)
    assert out[0].error.startswith("malformed_csv")
    # the reader recovers: later rows are read normally
    assert out[-1].text == "text number 19999" and out[-1].error is None


def test_jsonl_rows_and_errors():
    data = (
        b'{"id": 1, "text": "Phone charger"}\n'
        b"{not json}\n"
        b"[1, 2]\n"
        b'{"id": "x"}\n'
        b'{"id": "y", "text": ""}\n'
        b'{"id": "z", "text": "bad \xff"}\n'
        b"\n"
        b'{"sku": "s", "name": "Mug", "details": "ceramic"}\n'
    )
    out = rows(data)
    assert [(r.row, (r.error or "").split(":")[0]) for r in out] == [
        (1, ""),
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "missing_text"),
        (5, "empty_text"),
        (6, "invalid_encoding"),
        (7, "missing_text"),
    ]
    assert out[0].id == "1" and out[0].text == "Phone charger"
    out = rows(data[-52:], id_column="sku", title_column="name", description_column="details")
    assert [(r.id, r.text) for r in out] == [("s", "Mug ceramic")]


@pytest.mark.parametrize(
    "data, code",
    [
        (b"PK\x03\x04" + b"\x00" * 100, "not-a-catalog"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not-a-catalog"),
        (bytes(range(256)) * 20, "not-a-catalog"),
        (b'[{"text": "a"}]', "not-a-catalog"),
        (b"<html><body>hi</body></html>", "not-a-catalog"),
        (b"name,price\nshirt,3\n", "missing-column"),
        (b"", "empty-catalog"),
        (b"  \n", "empty-catalog"),
    ],
)
def test_refused_up_front(data, code):
    with pytest.raises(CatalogRefused) as exc:
        rows(data)
    assert exc.value.code == code
    assert exc.value.detail


def test_missing_named_column_names_it():
    with pytest.raises(CatalogRefused) as exc:
        rows(b"text\nhello\n", text_column="body")
    assert exc.value.code == "missing-column" and "'body'" in exc.value.detail


def test_reads_lazily_block_by_block():
    """Rows come out while the stream is far from its end: nothing reads the whole file first."""
    line = b"1,some product text that is long enough to matter\n"
    stream = Trickle(b"id,text\n" + line * 200_000, step=1 << 16)
    reader = open_catalog(stream, Options())
    it = iter(reader)
    for _ in range(1000):
        next(it)
    assert stream.pos < 1 << 18  # a few blocks of a ~10 MB stream


class Endless(io.RawIOBase):
    """``head`` then ``unit`` repeated up to ``limit`` bytes (a stand-in for an endless upload)."""

    def __init__(self, head: bytes, unit: bytes, limit: int = 8 << 20):
        self.head, self.unit, self.pos, self.limit = head, unit, 0, limit

    def readable(self):
        return True

    def read(self, n=-1):
        n = min(1 << 16 if n is None or n < 0 else n, self.limit - self.pos)
        if self.pos < len(self.head):
            out = self.head[self.pos : self.pos + n]
        else:
            out = (self.unit * (n // len(self.unit) + 1))[:n]
        self.pos += len(out)
        return out


def test_a_record_of_many_small_quoted_fields_over_many_lines_is_bounded():
    """csv bounds fields, not records: an unclosed quote followed by `x","y` lines forever is one
    endless record. It is cut at the record budget and reported as a row; reading goes on."""
    stream = Endless(b'text,id\n"a\n', b'x","y\n')
    reader = open_catalog(stream, Options(max_text_length=1000))
    first = next(iter(reader))
    assert first.error.startswith("malformed_csv: a record of more than")
    assert stream.pos < 2 * reader.lines.max_bytes + (1 << 17)  # not the whole (endless) stream

    data = b'id,text\n1,"a\n' + b'x","y\n' * 100_000 + b'z"\n2,fine\n'
    out = rows(data, step=1 << 16, max_text_length=1000)
    assert out[0].error.startswith("malformed_csv") and len(out) < 10
    assert (out[-1].id, out[-1].text) == ("2", "fine")
    assert sum(r.error is None for r in out[:-1]) <= 1  # at most the leftover of the cut record


def test_lone_surrogates_from_json_escapes_are_invalid_encoding():
    """JSON escapes decode to lone surrogates, which Redis cannot store (UTF-8): a row error."""
    data = b'{"id": "a", "text": "\\ud800 shirt"}\n{"id": "\\udfff-x", "text": "ok"}\n{"text": "\\ud83d\\ude00 ok"}\n'
    out = rows(data)
    assert out[0].error.startswith("invalid_encoding") and out[0].text is None
    assert (out[1].id, out[1].text, out[1].error) == ("\ufffd-x", "ok", None)
    assert (out[2].text, out[2].error) == ("\U0001f600 ok", None)  # a valid pair is a character
    for r in out:
        for field in (r.id, r.text, r.error):
            assert field is None or field.encode("utf-8")


def test_ids_of_error_rows_are_cleaned_like_any_id():
    data = b"id,text\n1,ok\nbad\xff\n" + b"x" * 300 + b"\n"
    out = rows(data)
    assert [r.error.split(":")[0] for r in out[1:]] == ["missing_field", "missing_field"]
    assert out[1].id == "bad\ufffd" and out[1].id.encode("utf-8")
    assert out[2].id == "x" * 256


def test_encodable_turns_an_unencodable_row_into_an_error():
    from web.catalog_ingest import Row, encodable

    good = Row(1, "a", "text")
    assert encodable(good) is good
    bad = encodable(Row(2, "\ud800", "shirt \udcff"))
    assert (bad.row, bad.id, bad.text) == (2, "\ufffd", None) and bad.error.startswith("invalid_encoding")


@pytest.mark.parametrize("declared", [None, "jsonl"])
def test_a_bad_first_jsonl_line_is_a_row_error_not_a_refusal(declared):
    for first in (b'{"text": "a",}', b"not json at all", b"[1, 2]"):
        if declared is None and not first.startswith(b"{"):
            continue  # sniffed as CSV
        out = rows(first + b'\n{"id": 2, "text": "b"}\n', format=declared)
        assert [(r.row, (r.error or "").split(":")[0]) for r in out] == [(1, "invalid_json"), (2, "")]


@pytest.mark.parametrize(
    "data",
    [b"hello\nworld\n", b'{\n  "text": "an indented JSON document"\n}\n', b"[1, 2]\n"],
)
def test_an_upload_that_clearly_is_not_jsonl_is_still_refused(data):
    with pytest.raises(CatalogRefused) as exc:
        rows(data, format="jsonl")
    assert exc.value.code == "not-a-catalog"


def test_a_character_cut_with_a_long_line_does_not_spill_into_the_next_row():
    # the line is cut in the middle of a 2-byte character (after "1,x" + n * "é")
    data = b"id,text\n1,x" + "é".encode() * 200_000 + b"\n2,fine\n"
    out = rows(data, step=1 << 16)
    assert out[0].error.startswith("line_too_long")
    assert (out[1].row, out[1].id, out[1].text, out[1].error) == (2, "2", "fine", None)


def test_an_incomplete_character_at_the_end_of_the_file_is_reported():
    out = rows(b"id,text\n1,fine\n2,bad \xc3", step=3)
    assert out[1].error.startswith("invalid_encoding")


def test_a_cut_line_that_parses_as_a_record_is_still_line_too_long():
    data = b"id,text\n1," + b"a," * 200_000 + b"\n2,ok\n"
    out = rows(data, step=1 << 16, max_text_length=1000)
    assert out[0].error.startswith("line_too_long")
    assert (out[1].id, out[1].text) == ("2", "ok")
