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
