"""``fluidgpt dataset import``: your OpenFOAM cases or particle-track tables -> the canonical
dataset (:mod:`fluidgpt.schema`, what ``fluidgpt dataset build`` writes and ``fit`` reads).

    fluidgpt dataset import runs/case_a runs/case_b --mapping import.yaml --output cfd.zarr
    fluidgpt dataset import part1.csv part2.parquet --mapping import.yaml --output tracks.zarr
    fluidgpt dataset table --table tracks.csv --column "x=X [mm]" ... (the same command)

The inputs are either OpenFOAM case directories (each one case, labelled by its directory
name; :func:`fluidgpt.readers.read_tracks`) or track tables (CSV, TSV, Parquet;
:func:`fluidgpt.readers.track_table`): with a mapped ``case`` column the tables are read as
one long table (a row repeated across files with other values is refused), without one each
file is one case labelled by its file name. The mapping file
(:mod:`fluidgpt.readers.mapping`) says which column is which and gives the conditions and
time grid; ``--column``, ``--conditions-file``, ``--steps`` / ``--interval`` / ``--start``
and ``--diameter`` override it. The case and particle labels become the ``case`` and
``particle`` coordinates; every check of the readers applies, and the dataset is written by
:func:`fluidgpt.schema.write_dataset` (nothing at the output path on error).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

__all__ = ["import_dataset", "command_line_mapping", "add_import_parser",
           "cmd_dataset_import"]

_OUTPUTS = (".zarr", ".zarr.zip", ".nc")
_DEFAULT_CLOUD = "kinematicCloud"


def _unique(notes: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _labels_once(labels: list[str], paths: list[Path], what: str) -> None:
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(str, paths))}: case labels {twice} repeat (each "
                         f"case is labelled by its {what}); expected one input per case")


def _check_columns(raw, mapping, path: Path) -> None:
    """Every mapped column is in the table, else one line naming the table and the keys."""
    absent = {column: mapping.where(f"{section}.{name}")
              for section in ("columns", "condition_columns")
              for name, column in getattr(mapping, section).items()
              if column not in raw.columns}
    if absent:
        raise ValueError(f"{path}: columns {list(absent)} not found ({'; '.join(absent.values())}"
                         f"); the file has {list(raw.columns)}")


def _condition_rows(raw, mapping, path: Path, label):
    """The values of the condition columns, one row per case of the table (a ``case``
    column holds the labels); a column that varies within a case is an error."""
    import pandas as pd

    names = list(mapping.condition_columns)
    rows = pd.DataFrame({n: raw[c].to_numpy() for n, c in mapping.condition_columns.items()})
    rows["case"] = raw[mapping.columns["case"]].to_numpy() if "case" in mapping.columns \
        else label
    varies = rows.groupby("case", sort=True)[names].nunique(dropna=False) > 1
    if varies.to_numpy().any():
        case, name = next((c, n) for c in varies.index for n in names if varies.loc[c, n])
        raise ValueError(f"{path}: condition column {mapping.condition_columns[name]!r} "
                         f"({mapping.where(f'condition_columns.{name}')}) takes several "
                         f"values in case {case!r}; expected one value per case")
    return rows.drop_duplicates("case")


def _table_tracks(paths: list[Path], mapping):
    """One long track table (a ``case`` column) and its condition rows (or None)."""
    import pandas as pd

    from .readers import read_table, track_table
    from .readers.tracks import check_track_table

    if "case" not in mapping.columns:
        _labels_once([p.stem for p in paths], paths, "file name, no case column being "
                                                      "mapped")
    frames, conditions, notes = [], [], []
    for path in paths:
        raw = read_table(path)
        _check_columns(raw, mapping, path)
        table = track_table(raw, mapping.columns, units=mapping.units, path=path)
        if "case" not in mapping.columns:
            table["case"] = path.stem
        if mapping.condition_columns:
            conditions.append(_condition_rows(raw, mapping, path, path.stem))
        frames.append(table)
        notes += table.attrs.get("notes", [])
    table = pd.concat(frames, ignore_index=True)
    table.attrs = {}
    if len(frames) > 1:  # a (case, particle, time) in two files must agree
        table = check_track_table(table, source=", ".join(map(str, paths)))
        notes += table.attrs["notes"]
    table.attrs = {"source": ", ".join(map(str, paths)), "notes": _unique(notes)}
    rows = pd.concat(conditions, ignore_index=True).drop_duplicates() if conditions else None
    return table, rows


def _foam_tracks(paths: list[Path], mapping):
    """The tracks of every case (a ``case`` column: the directory names)."""
    import pandas as pd

    from .readers import read_tracks

    frames, notes = [], []
    labels = [p.resolve().name for p in paths]
    _labels_once(labels, paths, "directory name")
    for path, label in zip(paths, labels):
        table = read_tracks(path, mapping.cloud or _DEFAULT_CLOUD)
        notes += table.attrs.get("notes", [])
        frames.append(table.drop(columns=["orig_proc", "orig_id"]).assign(case=label))
    table = pd.concat(frames, ignore_index=True)
    table.attrs = {"source": ", ".join(map(str, paths)), "notes": _unique(notes)}
    return table, None


def _foam_wall(paths: list[Path], mapping, cases: list) -> dict:
    """Erosion rates (N, F) in the order of ``cases`` and the wall faces of the first case;
    every case must have the same wall faces."""
    import numpy as np

    from .readers import erosion_rate, read_wall_faces

    e, cloud = mapping.erosion, mapping.cloud or _DEFAULT_CLOUD
    by_label = {p.resolve().name: p for p in paths}
    first = read_wall_faces(paths[0], e.patches)
    rates = []
    for label in cases:
        case = by_label[label]
        faces = first if case == paths[0] else read_wall_faces(case, e.patches)
        if faces["face_centre"].shape != first["face_centre"].shape or not np.allclose(
                faces["face_centre"], first["face_centre"], rtol=1e-6, atol=1e-9):
            raise ValueError(f"{case}: wall faces differ from those of {paths[0]}; expected "
                             "one mesh for every case")
        rates.append(erosion_rate(case, e.start, e.end, e.wall_density, faces["face_area"],
                                  e.patches, cloud))
    return {"erosion_rate": np.stack(rates), "face_centre": first["face_centre"],
            "face_area": first["face_area"], "patch": first["patch"],
            "face_vertices": first["face_vertices"]}


def _condition_source(mapping) -> str:
    """The one key that gives the conditions (checked before any track is read)."""
    given = [k for k, v in (("conditions", mapping.conditions),
                            ("conditions_file", mapping.conditions_file),
                            ("condition_columns", mapping.condition_columns)) if v]
    if len(given) > 1:
        raise ValueError(f"{mapping.where(given[0])} and {mapping.where(given[1])}: expected "
                         "one source of conditions")
    if not given:
        raise ValueError("no conditions: give --conditions-file FILE.csv, or conditions, "
                         "conditions_file or condition_columns in a --mapping file")
    return given[0]


def _conditions(mapping, cases: list, rows) -> tuple[list[str], object]:
    """Condition names and (N, C) values in the order of ``cases``, from the one source."""
    import pandas as pd

    from .readers import case_conditions, read_table

    source = _condition_source(mapping)
    if source == "condition_columns":
        return case_conditions(rows, cases, mapping.where("condition_columns"))
    if source == "conditions_file":
        path = Path(mapping.conditions_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such conditions file "
                                    f"({mapping.where('conditions_file')})")
        return case_conditions(read_table(path), cases, path)
    if None in mapping.conditions and len(cases) > 1:
        raise ValueError(f"{mapping.where('conditions')}: one case's conditions, but the "
                         f"inputs hold cases {cases}; expected case: {{condition: value}} "
                         "for each")
    rows = pd.DataFrame([{**({} if label is None else {"case": label}), **values}
                         for label, values in mapping.conditions.items()])
    return case_conditions(rows, cases, mapping.where("conditions"))


def _condition_units(mapping, names: list[str]) -> list[str]:
    from .schema import CONDITION_ATTRS

    unused = sorted(set(mapping.condition_units) - set(names))
    if unused:
        raise ValueError(f"{mapping.where(f'condition_units.{unused[0]}')}: not a condition "
                         f"of the data (it has {names})")
    units, unknown = [], []
    for name in names:
        known, given = CONDITION_ATTRS.get(name), mapping.condition_units.get(name)
        if known is not None and given is not None and given != known[0]:
            raise ValueError(f"{mapping.where(f'condition_units.{name}')}: expected "
                             f"{known[0]!r} (the unit of {name} in fluidgpt.schema), found "
                             f"{given!r}")
        if known is None and given is None:
            unknown.append(name)
        units.append(given if given is not None else known[0] if known else "")
    if unknown:
        raise ValueError(f"conditions {unknown} are not known to fluidgpt.schema: give their "
                         "units (condition_units: {name: unit} in the --mapping file)")
    return units


def _input_kind(paths: list[Path], mapping) -> bool:
    """True for OpenFOAM case directories, False for track tables (never both)."""
    from .readers.tables import TABLE_SUFFIXES

    for path in paths:  # a missing table is named by read_table
        if not path.exists() and path.suffix.lower() not in TABLE_SUFFIXES:
            raise FileNotFoundError(f"{path}: no such OpenFOAM case directory or track table")
    foam = {p.is_dir() for p in paths}
    if len(foam) > 1:
        raise ValueError(f"inputs: expected OpenFOAM case directories or track tables, found "
                         f"both ({', '.join(map(str, paths))})")
    foam = foam.pop()
    for key in (("columns", "condition_columns") if foam else ("cloud", "erosion")):
        if getattr(mapping, key):
            raise ValueError(f"{mapping.where(key)}: only for "
                             f"{'track tables' if foam else 'OpenFOAM cases'}; the inputs "
                             f"are {'OpenFOAM case directories' if foam else 'track tables'}")
    return foam


def import_dataset(inputs: Sequence, mapping=None):
    """The canonical dataset (xarray) of ``inputs`` (OpenFOAM case directories, or track
    tables) as ``mapping`` (:class:`~fluidgpt.readers.mapping.ImportMapping`) says; its
    ``notes`` attribute lists what was converted, dropped or skipped."""
    from .readers import tracks_to_dataset, uniform_times
    from .readers.mapping import ImportMapping

    mapping = ImportMapping() if mapping is None else mapping
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("no inputs: give OpenFOAM case directories or track tables")
    foam = _input_kind(paths, mapping)
    if mapping.time is None:
        raise ValueError("no time grid: give --steps and --interval (or time: {steps: N, "
                         "interval: DT} in the --mapping file)")
    _condition_source(mapping)
    table, rows = (_foam_tracks if foam else _table_tracks)(paths, mapping)
    cases = sorted(table["case"].unique())
    names, values = _conditions(mapping, cases, rows)
    wall = _foam_wall(paths, mapping, cases) if foam and mapping.erosion else None
    kind = "OpenFOAM cases" if foam else "particle-track tables"
    return tracks_to_dataset(
        table, uniform_times(*mapping.time), values, names,
        condition_units=_condition_units(mapping, names), particles=mapping.particles,
        diameter=mapping.diameter, wall=wall,
        attrs={"source": f"{kind} {', '.join(p.name for p in paths)} (fluidgpt dataset "
                         "import)", **({} if mapping.source == "command line" else
                                       {"mapping": Path(mapping.source).name})})


def command_line_mapping(args: argparse.Namespace):
    """The --mapping file with the options of the command line applied over it."""
    from .readers.mapping import ImportMapping, check_time_grid, load_mapping

    m = load_mapping(args.mapping) if args.mapping else ImportMapping()
    columns, units, where = dict(m.columns), dict(m.units), dict(m.command_line)
    for item in args.column:
        name, eq, header = item.partition("=")
        if not (eq and name and header):
            raise ValueError(f"--column {item!r}: expected NAME=HEADER")
        columns[name] = header
        units.pop(name, None)  # a unit stated for the file's column is not this one's
        where[f"columns.{name}"] = f"--column {item}"
    changes = {"columns": columns, "units": units}
    if args.conditions_file is not None:
        changes["conditions_file"] = Path(args.conditions_file)
        where["conditions_file"] = "--conditions-file"
    if (args.steps is None) != (args.interval is None):
        raise ValueError("--steps and --interval: give both (or time: in the --mapping file)")
    if args.steps is not None or args.start is not None:
        steps, interval, start = m.time or (None, None, 0.0)
        if args.steps is not None:
            steps, interval = args.steps, args.interval
        start = start if args.start is None else args.start
        changes["time"] = check_time_grid(steps, interval, start,
                                          ("--steps", "--interval", "--start"))
        where["time"] = "--steps/--interval/--start"
    if args.diameter is not None:
        if not args.diameter > 0:
            raise ValueError(f"--diameter: expected a positive number [m], found "
                             f"{args.diameter:g}")
        changes["diameter"] = args.diameter
    return dataclasses.replace(m, command_line=where, **changes)


def cmd_dataset_import(args: argparse.Namespace) -> int:
    """``fluidgpt dataset import`` (and its first spelling ``dataset table``)."""
    from .schema import write_dataset

    output = Path(args.output)
    if not output.name.lower().endswith(_OUTPUTS):
        raise ValueError(f"--output: expected a path ending in {', '.join(_OUTPUTS)}, found "
                         f"{args.output!r}")
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    ds = import_dataset([*args.inputs, *args.table], command_line_mapping(args))
    write_dataset(ds, output, overwrite=args.overwrite)
    print(f"wrote {output}: {dict(ds.sizes)}"
          + "".join(f"\nnote: {n}" for n in ds.attrs.get("notes", "").split("; ") if n))
    return 0


def add_import_parser(actions) -> None:
    """Add ``import`` (alias ``table``) to the subparsers of ``fluidgpt dataset``."""
    p = actions.add_parser(
        "import", aliases=["table"],
        help="OpenFOAM cases or particle-track tables (CSV / Parquet) -> a canonical "
             "dataset (docs/fluidgpt.md, 'Importing your own data')",
        description="OpenFOAM case directories (one case each, labelled by the directory "
                    "name) or particle-track tables (with a mapped case column, or one case "
                    "per file, labelled by the file name) -> a canonical dataset. The "
                    "mapping file (see fluidgpt.readers.mapping) names the columns and "
                    "gives the conditions and time grid; the options override it. Give the "
                    "inputs before the options.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="OpenFOAM case directories, or track tables (CSV, TSV, Parquet)")
    p.add_argument("--table", action="append", default=[], help="a track table (as INPUT)")
    p.add_argument("--mapping", default=None, metavar="FILE.yaml",
                   help="column map, conditions, time grid (fluidgpt.readers.mapping)")
    p.add_argument("--column", action="append", default=[], metavar="NAME=HEADER",
                   help="canonical name (particle, time, x, y, z; u, v, w, diameter, case) = "
                        "the table's header; a unit in it ('X [mm]') is converted to SI")
    p.add_argument("--conditions-file", default=None,
                   help="CSV: one column per condition, a 'case' column naming each case")
    p.add_argument("--steps", type=int, default=None, help="time steps of the grid")
    p.add_argument("--interval", type=float, default=None, help="seconds between steps")
    p.add_argument("--start", type=float, default=None, help="time of step 0 [s] (0)")
    p.add_argument("--diameter", type=float, default=None,
                   help="[m], when the tables have no diameter")
    p.add_argument("--output", required=True, help=".zarr, .zarr.zip or .nc")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_dataset_import)
