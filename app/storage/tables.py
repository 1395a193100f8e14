"""Uploaded tables (CSV, TSV, JSONL with a header or keys) -> validated rows of strings.

Every problem is reported with what to fix and, where it is about rows, their line numbers.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

FORMATS = ("csv", "tsv", "jsonl")


class InvalidTable(ValueError):
    """The upload cannot be used; the message says why and what to fix."""


@dataclass(frozen=True)
class Table:
    format: str
    columns: list[str]
    rows: list[dict[str, Any]]  # cells are strings, or lists of strings (several labels)
    lines: list[int]  # file line of each row (for a quoted multi-line CSV field, its last line)


def detect_format(filename: str, text: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in FORMATS:
        return suffix
    if suffix in ("json", "ndjson"):
        return "jsonl"
    first = text.lstrip()[:1]
    if first == "{":
        return "jsonl"
    return "tsv" if "\t" in text.split("\n", 1)[0] else "csv"


def decode(raw: bytes) -> str:
    if not raw.strip():
        raise InvalidTable("the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidTable(
            f"the file is not UTF-8 text (undecodable byte at offset {error.start}); save it as UTF-8"
        ) from None


def parse_table(raw: bytes, filename: str) -> Table:
    text = decode(raw)
    kind = detect_format(filename, text)
    table = _parse_jsonl(text) if kind == "jsonl" else _parse_delimited(text, kind)
    if not table.rows:
        raise InvalidTable("the file has a header but no rows")
    return table


def _parse_delimited(text: str, kind: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",")
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise InvalidTable(f"the {kind.upper()} file has no header row; the first line must name the columns")
    columns = [name.strip() for name in header]
    duplicated = sorted(name for name, n in Counter(columns).items() if n > 1)
    if duplicated or "" in columns:
        raise InvalidTable(f"header names must be unique and non-empty (problem: {duplicated or ['(empty)']})")
    rows, lines = [], []
    for values in reader:
        if not values:
            continue  # blank line
        if len(values) != len(columns):
            raise InvalidTable(f"line {reader.line_num} has {len(values)} fields but the header has {len(columns)}")
        rows.append(dict(zip(columns, values, strict=True)))
        lines.append(reader.line_num)
    return Table(kind, columns, rows, lines)


def _parse_jsonl(text: str) -> Table:
    columns: dict[str, None] = {}
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidTable(f"line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InvalidTable(f"line {number} is not a JSON object")
        for key, value in record.items():
            if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict | list) for v in value)):
                raise InvalidTable(f"line {number}: field {key!r} must be a string, a number or a list of them")
            columns.setdefault(key, None)
        rows.append({k: _cell(v) for k, v in record.items()})
        lines.append(number)
    return Table("jsonl", list(columns), rows, lines)


def _cell(value: object) -> str | list[str]:
    """JSON values as strings; a list (several labels of one text) as a list of strings."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return "" if value is None else str(value)


def _empty(value: str | list[str]) -> bool:
    return not value if isinstance(value, list) else not value.strip()


def _lines_where(table: Table, column: str) -> list[int]:
    return [line for row, line in zip(table.rows, table.lines, strict=True) if _empty(row.get(column, ""))]


def _describe_lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:20]))
    return shown + (f" (and {len(lines) - 20} more)" if len(lines) > 20 else "")


def require_column(table: Table, column: str, role: str) -> None:
    """The column exists and no row leaves it empty."""
    if column not in table.columns:
        raise InvalidTable(
            f"no {role} column {column!r}; the columns are: {', '.join(table.columns)} "
            f"(name the right one with {role}_field)"
        )
    empty = _lines_where(table, column)
    if empty:
        raise InvalidTable(f"empty {role} in column {column!r} on line(s) {_describe_lines(empty)}")
    if role == "text":
        listed = [line for row, line in zip(table.rows, table.lines, strict=True) if isinstance(row[column], list)]
        if listed:
            raise InvalidTable(
                f"the text in column {column!r} must be a string, not a list, on line(s) {_describe_lines(listed)}"
            )


def label_counts(rows: list[dict[str, Any]], column: str) -> dict[str, int]:
    """How often each label occurs; each label of a list counts once."""
    counts: Counter[str] = Counter()
    for row in rows:
        value = row[column]
        counts.update(value if isinstance(value, list) else [value])
    return dict(sorted(counts.items()))
