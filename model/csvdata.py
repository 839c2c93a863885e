"""Points from CSV text: two numeric columns x,y, one point a line, an optional header row.

A leading UTF-8 byte-order mark is skipped. The first line is a header only when neither of
its fields is a number ("x,y"); any other line that is not two finite numbers is an error
naming it, the first line too ("1,abc" is a bad point, not a header)."""

import csv
import io
import math

from model.config import TrainingInputError


class CsvError(TrainingInputError):
    """A line of the CSV text is not a point; the message names the line."""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_points(text: str) -> tuple[list[float], list[float]]:
    """(x, y) from CSV text; blank lines are skipped, the first line may be a header."""
    xs: list[float] = []
    ys: list[float] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        for row in reader:
            _add_row(row, reader.line_num, xs, ys)
    except csv.Error as exc:  # a NUL byte, a newline inside a field
        raise CsvError(f"line {reader.line_num}: {exc}") from exc
    if not xs:
        raise CsvError("the CSV text has no points")
    return xs, ys


def _add_row(row: list[str], lineno: int, xs: list[float], ys: list[float]) -> None:
    if not row or all(not cell.strip() for cell in row):
        return
    values = [_number(cell) for cell in row]
    if lineno == 1 and len(row) == 2 and all(v is None for v in values):
        return  # a header row such as "x,y": no number in it
    x, y = values if len(values) == 2 else (None, None)
    if x is None or y is None:
        raise CsvError(f"line {lineno}: expected two numbers x,y, got {','.join(row)[:80]!r}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise CsvError(f"line {lineno}: x and y must be finite numbers, got {','.join(row)[:80]!r}")
    xs.append(x)
    ys.append(y)
