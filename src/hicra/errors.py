"""The one error type for bad user input.

Raise `InputError` anywhere a file, row or field supplied by the user is wrong. The CLI turns it into a
single line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input. The message names the file, the row (line) and the field where they are known."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.path, self.row, self.field = path, row, field
        where = []
        if path is not None:
            where.append(str(path) if row is None else f"{path}:{row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
