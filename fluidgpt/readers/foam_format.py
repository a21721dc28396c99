"""Parsing of OpenFOAM ASCII files (v1912): headers, lists, dictionaries and field values.

Only what the case reader needs: a ``FoamFile`` header, the list forms ``N(...)`` (on one
line or over many) and ``N{value}`` (all values equal), dictionaries of entries and
sub-dictionaries, and field values ``uniform v`` / ``nonuniform List<T> ...``. Every
problem raises FoamFormatError naming the file and what was wrong; large numeric lists are
parsed with numpy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["FoamFormatError", "FoamFile", "read_foam_file", "parse_list", "parse_dict",
           "parse_field_value", "COMPONENTS"]

# Values per element of each list type; "positions" lines are (x y z) celli.
COMPONENTS = {"scalar": 1, "label": 1, "vector": 3, "positions": 4}

_HEADER = re.compile(r"FoamFile\s*\{(?P<body>[^}]*)\}", re.S)
_COMMENT_BLOCK = re.compile(r"/\*.*?\*/", re.S)
_COMMENT_LINE = re.compile(r"//[^\n]*")
_LIST_START = re.compile(r"(?P<n>\d+)\s*(?P<open>[({])")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SPACE = re.compile(r"\s*")
_KEY = re.compile(r'"[^"]*"|[^\s{};()]+')


class FoamFormatError(ValueError):
    """An OpenFOAM file that cannot be read: the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class FoamFile:
    """One ASCII OpenFOAM file: its header entries and its body with comments removed."""

    def __init__(self, path, header: dict[str, str], body: str):
        self.path = Path(path)
        self.header = header
        self.body = body

    def error(self, problem: str) -> FoamFormatError:
        return FoamFormatError(self.path, problem)

    @property
    def cls(self) -> str:
        return self.header.get("class", "")


def read_foam_file(path) -> FoamFile:
    """Read a file, check its FoamFile header (ASCII only) and strip comments."""
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except FileNotFoundError:
        raise FoamFormatError(path, "file not found") from None
    except UnicodeDecodeError:
        raise FoamFormatError(path, "not a text file (binary OpenFOAM output is not "
                                    "supported: set writeFormat ascii)") from None
    text = _COMMENT_LINE.sub("", _COMMENT_BLOCK.sub("", text))
    match = _HEADER.search(text)
    if match is None:
        raise FoamFormatError(path, "no 'FoamFile { ... }' header")
    header = {}
    for entry in match.group("body").split(";"):
        parts = entry.split(None, 1)
        if len(parts) == 2:
            header[parts[0]] = parts[1].strip().strip('"')
    if header.get("format", "ascii") != "ascii":
        raise FoamFormatError(path, f"format is {header['format']!r}; only ascii is supported")
    return FoamFile(path, header, text[match.end():])


def _close_paren(text: str, start: int, where: FoamFile | None) -> int:
    """Index of the ')' that closes the '(' at text[start]."""
    depth = 0
    for m in re.finditer(r"[()]", text[start:]):
        depth += 1 if m.group() == "(" else -1
        if depth == 0:
            return start + m.start()
    raise _err(where, "unbalanced parentheses: the list is truncated")


def _err(where: FoamFile | None, problem: str) -> FoamFormatError:
    return where.error(problem) if where is not None else FoamFormatError(None, problem)


def _numbers(text: str, where: FoamFile | None, what: str) -> np.ndarray:
    flat = text.replace("(", " ").replace(")", " ").split()
    try:
        return np.array(flat, dtype=float)
    except ValueError:
        bad = next(tok for tok in flat if not _NUMBER.match(tok))
        raise _err(where, f"{what}: {bad!r} is not a number") from None


def parse_list(text: str, kind: str, where: FoamFile | None = None, pos: int = 0,
               what: str = "list") -> tuple[np.ndarray, int]:
    """Parse the list starting at or after text[pos]; returns (values, end index).

    kind: one of COMPONENTS. Values come back as (N,) for scalars/labels and (N, C) otherwise.
    Accepts ``N(...)``, ``N{v}`` and an empty ``0()``. The count N must match the content.
    """
    ncomp = COMPONENTS[kind]
    m = _LIST_START.search(text, pos)
    if m is None or text[pos:m.start()].strip():
        found = text[pos:pos + 40].strip() or "end of file"
        raise _err(where, f"{what}: expected a list 'N(...)' or 'N{{value}}', found {found!r}")
    n = int(m.group("n"))
    if m.group("open") == "{":
        close = text.find("}", m.end())
        if close < 0:
            raise _err(where, f"{what}: unclosed '{{' of a uniform list")
        value = _numbers(text[m.end():close], where, what)
        if value.size != ncomp:
            raise _err(where, f"{what}: uniform value has {value.size} components, "
                              f"expected {ncomp}")
        out = np.broadcast_to(value, (n, ncomp)).copy()
        return (out[:, 0] if ncomp == 1 else out), close + 1
    close = _close_paren(text, m.end() - 1, where)
    values = _numbers(text[m.end():close], where, what)
    if values.size != n * ncomp:
        raise _err(where, f"{what}: header says {n} entries of {ncomp} value(s) each "
                          f"({n * ncomp} numbers), found {values.size} numbers")
    values = values.reshape(n, ncomp)
    return (values[:, 0] if ncomp == 1 else values), close + 1


def parse_dict(text: str, where: FoamFile | None = None) -> dict:
    """Parse dictionary entries 'key value;' and 'key { ... }' into nested dicts of strings.

    A value is kept as raw text (lists inside are not parsed); quoted keys lose their quotes.
    """
    out, pos, n = {}, 0, len(text)
    while True:
        pos = _SPACE.match(text, pos).end()
        if pos >= n:
            return out
        km = _KEY.match(text, pos)
        if km is None:
            raise _err(where, f"expected a dictionary keyword, found {text[pos:pos + 30]!r}")
        key = km.group().strip('"')
        pos = _SPACE.match(text, km.end()).end()
        if pos < n and text[pos] == "{":
            close = _close_brace(text, pos, where, key)
            out[key] = parse_dict(text[pos + 1:close], where)
            pos = close + 1
            continue
        end = _entry_end(text, pos, where, key)
        out[key] = text[pos:end].strip()
        pos = end + 1


def _close_brace(text: str, start: int, where, key: str) -> int:
    depth = 0
    for m in re.finditer(r"[{}]", text[start:]):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return start + m.start()
    raise _err(where, f"sub-dictionary {key!r} is not closed (file truncated?)")


def _entry_end(text: str, pos: int, where, key: str) -> int:
    """Index of the ';' ending an entry, skipping over parenthesised lists."""
    while True:
        semi = text.find(";", pos)
        paren = text.find("(", pos)
        if semi < 0:
            raise _err(where, f"entry {key!r} has no terminating ';' (file truncated?)")
        if 0 <= paren < semi:
            pos = _close_paren(text, paren, where) + 1
            continue
        return semi


def parse_field_value(raw: str, kind: str, size: int, where: FoamFile | None = None,
                      what: str = "value") -> np.ndarray:
    """Expand a field value ('uniform v' or 'nonuniform List<T> ...') to `size` entries."""
    raw = raw.strip()
    ncomp = COMPONENTS[kind]
    if raw.startswith("uniform"):
        value = _numbers(raw[len("uniform"):], where, what)
        if value.size != ncomp:
            raise _err(where, f"{what}: uniform value has {value.size} components, "
                              f"expected {ncomp}")
        out = np.broadcast_to(value, (size, ncomp)).copy()
        return out[:, 0] if ncomp == 1 else out
    m = re.match(r"nonuniform\s+List<\w+>\s*", raw)
    if m is None:
        raise _err(where, f"{what}: expected 'uniform ...' or 'nonuniform List<...> ...', "
                          f"found {raw[:40]!r}")
    values, _ = parse_list(raw, kind, where, m.end(), what)
    if len(values) != size:
        raise _err(where, f"{what}: {len(values)} values for {size} faces")
    return values
