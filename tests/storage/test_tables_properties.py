"""Property-based: whatever bytes arrive as an upload, parsing either gives well-formed rows or an
InvalidTable with a message, never another exception."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.tables import InvalidTable, parse_table

NAMES = st.sampled_from(["d.csv", "d.tsv", "d.jsonl", "d.json", "upload", "d.txt"])
CELLS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


def check(raw: bytes, filename: str) -> None:
    try:
        table = parse_table(raw, filename)
    except InvalidTable as error:
        assert str(error)  # says why
        return
    assert table.format in ("csv", "tsv", "jsonl") and len(table.rows) == len(table.lines)
    for row in table.rows:
        assert list(row) == table.columns or set(row) <= set(table.columns)
        for cell in row.values():
            assert isinstance(cell, str) or (isinstance(cell, list) and all(isinstance(c, str) for c in cell))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), NAMES)
def test_any_bytes_parse_or_are_refused_with_a_reason(raw, filename):
    check(raw, filename)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), min_size=1, max_size=8), st.sampled_from([",", "\t"]))
def test_delimited_text_of_any_shape(rows, delimiter):
    raw = "\n".join(delimiter.join(cells) for cells in rows).encode()
    check(raw, "d.tsv" if delimiter == "\t" else "d.csv")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | CELLS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELLS, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(CELLS, JSON_VALUES, max_size=4) | JSON_VALUES, min_size=1, max_size=6))
def test_jsonl_of_any_values(lines):
    check("\n".join(json.dumps(line) for line in lines).encode(), "d.jsonl")
