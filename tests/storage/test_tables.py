import pytest

from app.storage.tables import InvalidTable, label_counts, parse_table, require_column


def test_csv_with_quoted_commas_and_bom():
    raw = '\ufefftext,label\n"hello, world",pos\nbye,neg\n'.encode()
    table = parse_table(raw, "a.csv")
    assert table.format == "csv"
    assert table.columns == ["text", "label"]
    assert table.rows == [{"text": "hello, world", "label": "pos"}, {"text": "bye", "label": "neg"}]
    assert table.lines == [2, 3]


def test_tsv_detected_by_extension_and_by_content():
    raw = b"text\tlabel\na b\tx\n"
    assert parse_table(raw, "d.tsv").rows == [{"text": "a b", "label": "x"}]
    assert parse_table(raw, "upload").format == "tsv"


def test_jsonl_numbers_become_strings_and_keys_form_columns():
    raw = b'{"text": "one", "label": 1}\n\n{"text": "two", "label": 0, "extra": null}\n'
    table = parse_table(raw, "d.jsonl")
    assert table.columns == ["text", "label", "extra"]
    assert table.rows[0] == {"text": "one", "label": "1"}
    assert table.rows[1] == {"text": "two", "label": "0", "extra": ""}
    assert table.lines == [1, 3]


@pytest.mark.parametrize(
    ("raw", "name", "message"),
    [
        (b"", "a.csv", "the file is empty"),
        (b"  \n ", "a.csv", "the file is empty"),
        (b"text,label\n", "a.csv", "header but no rows"),
        (b"text,label\n\xff\xfe,x\n", "a.csv", "not UTF-8 text (undecodable byte at offset 11)"),
        (b"text,label\na,b,c\n", "a.csv", "line 2 has 3 fields but the header has 2"),
        (b"text,text\na,b\n", "a.csv", "unique"),
        (b'{"text": "a"}\n{oops\n', "a.jsonl", "line 2 is not valid JSON"),
        (b'{"text": "a"}\n[1, 2]\n', "a.jsonl", "line 2 is not a JSON object"),
        (b'{"text": {"nested": 1}}\n', "a.jsonl", "line 1: field 'text' must be a string, a number or a list of them"),
    ],
)
def test_unusable_files_say_why(raw, name, message):
    with pytest.raises(InvalidTable, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_table(raw, name)


def test_missing_column_names_the_columns_that_exist():
    table = parse_table(b"sentence,label\nhi,x\n", "a.csv")
    with pytest.raises(InvalidTable) as error:
        require_column(table, "text", "text")
    assert "no text column 'text'; the columns are: sentence, label (name the right one with text_field)" in str(
        error.value
    )


def test_empty_text_names_the_line_numbers():
    table = parse_table(b"text,label\nfine,a\n,b\n  ,a\nok,b\n", "a.csv")
    with pytest.raises(InvalidTable, match=r"empty text in column 'text' on line\(s\) 3, 4$"):
        require_column(table, "text", "text")


def test_long_lists_of_lines_are_cut_with_a_count():
    raw = b"text,label\n" + b",a\n" * 25
    with pytest.raises(InvalidTable, match=r"line\(s\) 2, 3, .*, 21 \(and 5 more\)"):
        require_column(parse_table(raw, "a.csv"), "text", "text")


def test_label_counts_are_sorted_by_label():
    rows = [{"label": "b"}, {"label": "a"}, {"label": "b"}]
    assert label_counts(rows, "label") == {"a": 1, "b": 2}


def test_jsonl_lists_are_several_labels_and_counted_each():
    raw = b'{"text": "a", "tags": ["x", "y"]}\n{"text": "b", "tags": ["y"]}\n{"text": "c", "tags": []}\n'
    table = parse_table(raw, "m.jsonl")
    assert table.rows[0]["tags"] == ["x", "y"]
    assert label_counts(table.rows[:2], "tags") == {"x": 1, "y": 2}
    with pytest.raises(InvalidTable, match=r"empty label in column 'tags' on line\(s\) 3"):
        require_column(table, "tags", "label")


def test_a_list_is_not_a_text():
    table = parse_table(b'{"text": ["a", "b"], "label": "x"}\n', "m.jsonl")
    with pytest.raises(InvalidTable, match=r"must be a string, not a list, on line\(s\) 1"):
        require_column(table, "text", "text")
