"""User-facing errors. Each says what was expected, what was found, and where."""

from __future__ import annotations


class ClinicalFTError(Exception):
    """Base class for errors caused by the user's input, config or environment.

    Command-line entry points print these without a traceback and exit with status 2.
    """


class ConfigError(ClinicalFTError):
    """One or more problems in a config or task card, all reported together."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class InputError(ClinicalFTError):
    """Malformed input data, located by file and line (or row)."""

    def __init__(self, path: str, line: int | None, expected: str, found: str | None = None):
        self.path, self.line, self.expected, self.found = str(path), line, expected, found
        where = f"{path}, line {line}" if line is not None else str(path)
        msg = f"{where}: expected {expected}"
        if found is not None:
            msg += f"; found {found}"
        super().__init__(msg)


class EncoderNotFound(ClinicalFTError):
    """An encoder name that is neither a local directory nor available offline."""
