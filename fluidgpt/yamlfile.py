"""Reading a YAML file the user wrote: a file that is not YAML is one error naming it and
the line (PyYAML's own message spans several lines and jsonargparse's names neither)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, error: type[Exception] = ValueError) -> Any:
    """The parsed contents of ``path``; binary data or invalid YAML raise ``error`` with
    "PATH: not valid YAML (line L, column C: problem)"."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError:
        raise error(f"{path}: expected a YAML text file, found binary data") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{path}: not valid YAML ({where}{problem})") from None
