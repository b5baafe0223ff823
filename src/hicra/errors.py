"""The one error type for bad user input.

Raise `InputError` anywhere a file, row or field supplied by the user is wrong. The CLI turns it into a
single line on stderr and exit code 2, with no traceback.

Row numbers count from 1 in every message. A row of a text file (JSON, JSONL, YAML) is its line number, written
`FILE:N` as editors and compilers write it; a row of a table file (Parquet), which has no lines, is written
`FILE, row N (1-based)` (`table_row=True`).
"""

from __future__ import annotations

from collections.abc import Sequence


def location(path: str, row: int | None = None, table_row: bool = False) -> str:
    """`path`, `path:row` (a line of a text file) or `path, row N (1-based)` (a row of a table file)."""
    if row is None:
        return str(path)
    return f"{path}, row {row} (1-based)" if table_row else f"{path}:{row}"


class InputError(ValueError):
    """Bad user input. The message names the file, the row (line) and the field where they are known.

    `row` counts from 1 (module docstring); `table_row` says it is a row of a table file, not a line. `field` is one
    name, or several (a sequence) when the input lacked all of the names looked for. Runs of whitespace in
    `message` (a library's multi-line error text quoted in it) become one space, so the error stays one line."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | Sequence[str] | None = None, table_row: bool = False):
        self.path, self.row, self.field, self.table_row = path, row, field, table_row
        message = " ".join(str(message).split())
        where = []
        if path is not None:
            where.append(location(path, row, table_row))
        if isinstance(field, str):
            where.append(f"field '{field}'")
        elif field is not None:
            names = [f"'{f}'" for f in field]
            where.append("fields " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]))
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
