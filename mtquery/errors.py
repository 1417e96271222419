"""Domain exceptions. The library raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class MTQueryError(Exception):
    """Base class for every error mtquery reports to a user."""

    exit_code = 1


class UsageError(MTQueryError):
    """The user asked for something malformed (bad coordinates, dates, names). Exit code 2."""

    exit_code = 2


class DataError(MTQueryError):
    """The data cannot serve the request (missing file, wrong schema, nothing found). Exit 1."""

    exit_code = 1
