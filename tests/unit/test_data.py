from pathlib import Path

import pytest

from training.data import DataError, load_dataset, load_ood


def write(tmp_path: Path, content: bytes, name: str = "d.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_no_header_quoted_newlines_and_crlf(tmp_path):
    p = write(
        tmp_path,
        b'Books,"A novel\r\nin two lines, with ""quotes"""\r\nElectronics,USB charger 20W\r\n'
        b"Household,Steel bucket\r\n",
    )
    d = load_dataset(p)
    assert d.labels == ["Books", "Electronics", "Household"]
    assert d.texts[0] == 'A novel in two lines, with "quotes"'
    assert d.stats["rows_read"] == 3 and d.stats["rows_after_cleaning"] == 3


@pytest.mark.parametrize("header", [b"category,text\n", b"label,text\n", b"Label,Text\n"])
def test_header_is_accepted(tmp_path, header):
    d = load_dataset(write(tmp_path, header + b"Books,A novel\nHousehold,A bucket\n"))
    assert d.labels == ["Books", "Household"]


def test_empty_text_whitespace_and_html_entities(tmp_path):
    d = load_dataset(write(tmp_path, b'Books,"  "\nHousehold,"  Pots &amp; pans\t set  "\nBooks,""\n'))
    assert d.texts == ["Pots & pans set"]
    assert d.stats == {
        "rows_read": 3,
        "empty_text_dropped": 2,
        "rows_after_cleaning": 1,
        "per_label": {"Electronics": 0, "Household": 1, "Books": 0, "Clothing & Accessories": 0},
    }


def test_unknown_label_names_the_line(tmp_path):
    p = write(tmp_path, b"Books,a\nHousehold,b\nToys,a teddy bear\n")
    with pytest.raises(DataError, match=r"d\.csv:3: unknown label 'Toys'"):
        load_dataset(p)


def test_unknown_label_line_counts_quoted_newlines(tmp_path):
    p = write(tmp_path, b'Books,"line one\nline two"\nGarden,x\n')
    with pytest.raises(DataError, match=r":3: unknown label 'Garden'"):
        load_dataset(p)


def test_sha256_recorded(tmp_path):
    import hashlib

    content = b"Books,a\n"
    assert load_dataset(write(tmp_path, content)).sha256 == hashlib.sha256(content).hexdigest()


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="no usable rows"):
        load_dataset(write(tmp_path, b""))


def test_ood_needs_header(tmp_path):
    with pytest.raises(DataError, match="header"):
        load_ood(write(tmp_path, b"Books,a\n"))
    d = load_ood(write(tmp_path, b"category,text,source\nBooks,A book,x\n", "o.csv"))
    assert d.texts == ["A book"]
