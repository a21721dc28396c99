"""The argument parsers of ``fluidgpt fit`` and ``fluidgpt compare``: jsonargparse parsers
whose errors are one line.

jsonargparse reports a bad value as nested, multi-line text (the parser key, the union's
subtypes, each subtype's error, the given value) followed by the usage. :func:`one_line`
reduces it to the key (dotted, at any depth, ``init_args`` left out), the expected type
and the value found; :class:`ExperimentParser` and :class:`FluidArgumentParser` raise it
as an :class:`ExperimentError`; :func:`one_line_errors` turns it into a
:class:`~fluidgpt.config.ConfigError` of that one line, which the command line prints with
exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from .config import ConfigError
from .yamlfile import read_yaml

__all__ = ["ExperimentError", "one_line", "one_line_errors", "ExperimentParser",
           "FluidArgumentParser", "check_config_files"]


class ExperimentError(ConfigError, argparse.ArgumentError):
    """A configuration the schema refuses. ``str()`` is jsonargparse's full message (a
    parser nests the messages of the parsers inside it, so the structure must survive);
    :attr:`line` is its one-line form, what the command line prints."""

    def __init__(self, message: str) -> None:
        ConfigError.__init__(self, message)
        self.argument_name, self.message = None, message

    @property
    def line(self) -> str:
        return one_line(self.message)

    def __str__(self) -> str:
        return self.message


#: What jsonargparse's messages (not ours) start with.
_JSONARGPARSE = (r"^(Does not validate against any of the Union subtypes|Parser key "
                 r"|Problem with given class_path)")


def one_line_errors(func: Any) -> Any:
    """Decorate a function that parses: an :class:`ExperimentError` leaves it as a
    :class:`~fluidgpt.config.ConfigError` whose message is the one line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ExperimentError as err:
            raise ConfigError(err.line) from None
        except ValueError as err:  # a class refused its arguments while being built
            text = str(err)
            if isinstance(err, ConfigError) or not re.search(_JSONARGPARSE, text):
                raise
            raise ConfigError(one_line(text)) from None

    return wrapper


def _type_name(text: str) -> str:
    """"<class 'int'>" -> "int"; "typing.Literal['a', 'b']" -> "one of 'a', 'b'"."""
    text = text.strip()
    m = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>", text)
    if m:
        return m.group(1)
    m = re.fullmatch(r"typing\.Literal\[(.*)\]", text)
    if m:
        return f"one of {m.group(1)}"
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)


def _sub_key(given: str, value: str) -> str | None:
    """The key inside a mapping-typed value (a TypedDict) that holds the bad value: the
    NestedArg of a command-line override, else the one key of the given mapping whose value
    reads as ``value``."""
    m = re.search(r"NestedArg\(key='([^']+)'", given)
    if m:
        return m.group(1)
    try:
        mapping = ast.literal_eval(given.strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(mapping, dict):
        return None
    keys = [k for k, v in mapping.items() if str(v) == value
            or (isinstance(v, (list, tuple)) and value in [str(x) for x in v])]
    return str(keys[0]) if len(keys) == 1 else None


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _union_items(block: str) -> tuple[list[str], str]:
    """The errors listed by a union's message (dedented) and its "Given value"."""
    lines = block.splitlines()
    given = next((ln.partition("Given value: ")[2] for ln in lines
                  if ln.startswith("Given value: ")), "")
    items: list[list[str]] = []
    inside = False
    for ln in lines:
        if ln.startswith("Errors:"):
            inside = True
        elif ln.startswith("Given value type:") or ln.startswith("Given value: "):
            inside = False
        elif inside and ln.startswith("  - "):
            items.append([ln[4:]])
        elif inside and items:
            items[-1].append(ln[4:] if ln.startswith("    ") else ln.strip())
    return ["\n".join(i) for i in items], given


def _parse(message: str) -> tuple[str, str, str | None]:
    """(key, what is wrong, the value found) of a jsonargparse error message."""
    message = textwrap.dedent(message).strip()
    m = re.match(r'Parser key "([^"]+)":[ \t]*\n?(.*)', message, re.S)
    if m:
        key, text, value = _parse(m.group(2))
        return _join(m.group(1), key), text, value
    m = re.match(r"Problem with given class_path '[^']*':[ \t]*\n?(.*)", message, re.S)
    if m:
        return _parse(m.group(1))
    m = re.match(r"([\w.]+): (expected .*|unknown key.*)$", message, re.S)
    if m and "\n" not in message:  # already one line (a nested parser of ours)
        found = re.search(r", found (.*)$", m.group(2))
        return m.group(1), m.group(2), found.group(1) if found else None
    if message.startswith("Does not validate against any of the Union subtypes"):
        items, given = _union_items(message)
        keep = [i for i in items if not re.fullmatch(r"Expected a <class 'NoneType'>", i)]
        if keep:
            first = keep[0]
            bare = None if "Got value:" in first else re.fullmatch(r"Expected a (.+)", first)
            if bare:  # the value itself is of the wrong type
                nullable = len(keep) < len(items)
                return "", (f"expected {_type_name(bare.group(1))}"
                            + (" or null" if nullable else "") + f", found {given!r}"), given
            key, text, value = _parse(first)
            if not key and value is not None:
                key = _sub_key(given, value.strip("'\"")) or ""
            return key, text, value
    return _leaf(message)


def _leaf(message: str) -> tuple[str, str, str | None]:
    m = re.search(r"unrecognized arguments: (.+)", message)
    if m:
        key, _, value = m.group(1).split()[0].lstrip("-").partition("=")
        return key, "unknown key" + (f" (value {value!r})" if value else ""), None
    m = re.search(r"Group '([^']+)' does not accept option '([^']+)'", message)
    if m:
        return _join(m.group(1), m.group(2)), "unknown key", None
    m = re.search(r"does not accept option '([^']+)'", message)
    if m:
        return m.group(1), "unknown key", None
    m = re.search(r"(?:Option|Key) '([^']+)' is not (?:accepted|expected)", message)
    if m:
        return m.group(1), "unknown key", None
    m = re.search(r"Unexpected keys: \{(.*?)\}", message)
    if m:
        keys = [k.strip(" '\"") for k in m.group(1).split(",")]
        return ",".join(keys), "unknown key", None
    m = re.search(r"Missing required keys: \{(.*?)\}", message)
    if m:
        return "", f"missing key(s) {m.group(1)}", None
    m = re.search(r"Import path (\S+ )?does not correspond to a subclass of (\w+)", message)
    if m:
        given = (m.group(1) or "").strip() or next(
            iter(re.findall(r"(?:Given value|Expected a path but) (\S+)", message)), "")
        given = re.sub(r"^: ", "", given)
        return "", f"expected a subclass of {m.group(2)}, found {given!r}", given
    m = re.search(r"Expected a path but (\S+) either not accessible", message)
    if m:
        return "", ("expected a class path (e.g. fluidgpt.module.GPTModule), found "
                    f"{m.group(1)!r}"), m.group(1)
    if "Expected a dot import path string" in message or "import path" in message.lower():
        value = re.findall(r"(?:dot import path string|Given value): (\S+)", message)
        return "", ("expected a class path (e.g. fluidgpt.module.GPTModule)"
                    + (f", found {value[-1]!r}" if value else "")), None
    m = re.search(r"Expected a (.+?)\. Got value: (.*)$", message, re.M)
    if m:
        return "", f"expected {_type_name(m.group(1))}, found {m.group(2)!r}", m.group(2)
    return "", " ".join(line.strip() for line in message.splitlines() if line.strip()), None


def one_line(message: str) -> str:
    """A jsonargparse error as one line: ``key: expected TYPE, found VALUE`` or
    ``key: unknown key`` (keys dotted from the top, ``init_args`` left out)."""
    key, text, _ = _parse(message)
    return f"{key}: {text}" if key else text


def check_config_files(argv: Sequence[str]) -> None:
    """Read every ``--config FILE`` of ``argv`` as YAML first: a file that is not YAML is a
    :class:`~fluidgpt.config.ConfigError` naming it and the line (jsonargparse's message
    names neither)."""
    argv = list(argv)
    paths = [b for a, b in zip(argv, argv[1:]) if a == "--config"]
    paths += [a.partition("=")[2] for a in argv if a.startswith("--config=")]
    for path in map(Path, paths):
        if not path.is_file():
            continue  # jsonargparse names a missing file (or reads a YAML string)
        read_yaml(path, ConfigError)


class _OneLineErrors:
    """Errors raised as one-line :class:`ExperimentError` instead of usage + exit; the
    config files are checked as YAML before jsonargparse reads them."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        raise ExperimentError(message) from ex

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        check_config_files(args or [])
        return super().parse_args(args, *rest, **kwargs)


class ExperimentParser(_OneLineErrors, ArgumentParser):
    """The parser of ``fluidgpt compare`` / ``demo`` (see :mod:`fluidgpt.compare.config`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


class FluidArgumentParser(_OneLineErrors, LightningArgumentParser):
    """The LightningCLI parser of ``fluidgpt fit`` / ``validate`` / ``test``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
