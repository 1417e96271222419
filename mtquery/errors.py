"""Domain exceptions. The library raises these; only the CLI turns them into exit codes.

Messages name the library's arguments (``k``, ``bbox``, ``start``...); ``argument`` says
which one was wrong so a front end can point at its own spelling (the CLI's ``--k``)."""

from __future__ import annotations


class MTQueryError(Exception):
    """Base class for every error mtquery reports to a user."""

    exit_code = 1

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class UsageError(MTQueryError):
    """The user asked for something malformed (bad coordinates, dates, names). Exit code 2."""

    exit_code = 2


class DataError(MTQueryError):
    """The data cannot serve the request (missing file, wrong schema, nothing found). Exit 1."""

    exit_code = 1
