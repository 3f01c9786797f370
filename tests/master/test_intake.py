"""Data intake: formats, limits and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from master_app.intake import DataError, load_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_load_with_summaries() -> None:
    tickets = load_dataset(EXAMPLES / "tickets.csv")
    assert len(tickets) == 40 and tickets.columns == ["id", "text", "label"]
    summary = tickets.summary()
    assert summary.row_count == 40 and len(summary.sample_rows) == 3
    assert summary.sample_rows[0]["text"].startswith("I was charged twice")
    reviews = load_dataset(EXAMPLES / "reviews.txt")
    assert reviews.columns == ["text"] and len(reviews) == 12
    numbers = load_dataset(EXAMPLES / "numbers.jsonl")
    assert numbers.records()[0] == {"x": 1, "text": "number 1"}


def test_bytes_upload_and_txt_skips_blank_lines() -> None:
    data = load_dataset(b"one\n\n two \nthree\n", "items.txt")
    assert data.texts("text") == ["one", "two", "three"]


@pytest.mark.parametrize(("raw", "name", "match"), [
    (b"", "e.csv", "is empty"),
    (b"   \n", "e.txt", "is empty"),
    (b"text\n", "h.csv", "no rows"),
    (b"caf\xe9\n", "latin.txt", "not UTF-8"),
    (b'{"a": 1}\nnot json\n', "bad.jsonl", "line 2 is not JSON"),
    (b"a,b\n1,2\n", "data.xlsx", "unknown file type"),
    (b"x" * 2000, "big.txt", "over the limit"),
])
def test_bad_input_is_a_clear_error(raw: bytes, name: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset(raw, name, max_bytes=1000)


def test_missing_column_and_row_limit(tmp_path: Path) -> None:
    data = load_dataset(EXAMPLES / "tickets.csv")
    with pytest.raises(DataError, match="column 'body' is not in tickets.csv"):
        data.texts("body")
    with pytest.raises(DataError, match="40 rows, over the limit of 10"):
        load_dataset(EXAMPLES / "tickets.csv", max_rows=10)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.csv")
    big = tmp_path / "big.csv"
    big.write_text("text\n" + "x\n" * 600)
    with pytest.raises(DataError, match="over the limit of 1,000"):
        load_dataset(big, max_bytes=1000)


def test_csv_rows_with_more_fields_than_the_header_are_an_error_not_shifted() -> None:
    # An unquoted comma in every text: pandas took the surplus leading fields as an index
    # and put the wrong values under each column, silently.
    raw = b"id,text\n1,I was charged, twice\n2,the app crashes, again\n"
    with pytest.raises(DataError, match=r"line 2 has 3 fields but the header has 2 \(id, "
                                        r"text\); quote fields that contain commas"):
        load_dataset(raw, "tickets.csv")
    trailing = load_dataset(b"id,text\n1,hello,\n2,world,\n", "t.csv")
    assert trailing.records() == [{"id": "1", "text": "hello"}, {"id": "2", "text": "world"}]
    with pytest.raises(DataError, match="not valid CSV: .*Expected 2 fields in line 3, saw 3$"):
        load_dataset(b"a,b\n1,2\n3,4,5\n", "ragged.csv")
