"""``categorizer submit-catalog`` against a fake service: incomplete downloads exit 1."""

from __future__ import annotations

import argparse

import pytest
import requests

from web import cli_catalog

CATALOG = {"catalog_id": "c", "status": "succeeded", "total": 3, "done": 3, "failed_rows": 0, "cached_rows": 0}
HEADER = b"row,id,category,confidence,model_version,error,needs_review\n"
ROWS = [b'1,"a\nb",Books,0.9,v1,,false\n', b"2,b,Books,0.9,v1,,false\n", b"3,c,Books,0.9,v1,,false\n"]


class FakeResponse:
    def __init__(self, status: int = 200, body=None, blocks=()):
        self.status_code, self.body, self.blocks = status, body, blocks
        self.headers = {"Location": "/v1/catalogs/c"}
        self.reason, self.text = "OK", ""

    def json(self):
        return self.body

    def iter_content(self, size):
        for block in self.blocks:
            if isinstance(block, Exception):
                raise block
            yield block

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeSession:
    def __init__(self, blocks):
        self.blocks = blocks

    def post(self, url, **kwargs):
        kwargs["data"].read(1 << 20)
        return FakeResponse(202, {**CATALOG, "status": "queued"})

    def get(self, url, **kwargs):
        if url.endswith("/results"):
            return FakeResponse(200, blocks=self.blocks)
        return FakeResponse(200, CATALOG)


def run(tmp_path, monkeypatch, blocks, fmt: str = "csv") -> tuple[int, argparse.Namespace]:
    monkeypatch.setattr("web.client.api_session", lambda: FakeSession(blocks))
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text\na,x\nb,y\nc,z\n")
    parser = argparse.ArgumentParser()
    cli_catalog.add_parser(parser.add_subparsers())
    args = parser.parse_args(["submit-catalog", str(src), "-o", str(tmp_path / f"out.{fmt}"), "-q", "--poll", "0"])
    return args.func(args), args


def test_a_complete_download_is_written(tmp_path, monkeypatch):
    code, args = run(tmp_path, monkeypatch, [HEADER, *ROWS])
    assert code == 0 and args.output.read_bytes() == HEADER + b"".join(ROWS)


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([HEADER, ROWS[0], ROWS[1]], "incomplete: 2 of 3 rows"),
        ([HEADER, ROWS[0], requests.exceptions.ChunkedEncodingError("broken")], "broke off"),
    ],
)
def test_an_incomplete_download_exits_1(tmp_path, monkeypatch, capsys, blocks, message):
    code, args = run(tmp_path, monkeypatch, blocks)
    assert code == 1 and message in capsys.readouterr().err
    assert not args.output.exists()


def test_jsonl_rows_are_counted(tmp_path, monkeypatch):
    code, _ = run(tmp_path, monkeypatch, [b'{"row":1}\n{"row":2}\n'], fmt="jsonl")
    assert code == 1
    code, _ = run(tmp_path, monkeypatch, [b'{"row":1}\n{"row":2}\n{"row":3}\n'], fmt="jsonl")
    assert code == 0
