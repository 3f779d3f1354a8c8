"""The one error type for user mistakes; only the CLI turns it into a message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: a bad suite, a missing file, invalid data.

    Carries where the mistake is (``source``: a file path, ``field``: a dotted
    field path, ``line``: a 1-based line of the YAML file) so the message can
    point at it.
    """

    def __init__(self, message: str, *, source: str | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.field = field
        self.line = line

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" ({self.field})" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class DataError(UserError):
    """Invalid content in a dataset or in a model's output (labels out of range, shapes)."""
