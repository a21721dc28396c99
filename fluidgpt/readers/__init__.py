"""Readers of raw particle-tracking output into the canonical fluidgpt dataset.

* ``openfoam``: an OpenFOAM (v1912, ASCII) case with a Lagrangian cloud and particleErosion.
* ``tables``: CSV / Parquet particle-track tables (e.g. a Fluent export) with a column map.
* ``tracks``: the long track table both produce, resampled onto a common time grid.
* ``units``: units named in a table's column headers (``X [mm]``), to SI.
* ``mapping``: the mapping file of ``fluidgpt dataset import`` (columns, conditions, times).
"""

from .foam_format import FoamFormatError
from .mapping import ImportMapping, load_mapping
from .openfoam import (
    erosion_rate,
    particle_key,
    read_cell_centre_boundary,
    read_eroded_volume,
    read_tracks,
    read_wall_faces,
)
from .tables import (
    case_conditions,
    read_case_conditions,
    read_table,
    read_track_table,
    table_dataset,
    track_table,
    tracks_to_dataset,
)
from .tracks import Trajectories, resample_tracks, uniform_times

__all__ = ["FoamFormatError", "read_tracks", "read_wall_faces", "read_eroded_volume",
           "read_cell_centre_boundary", "erosion_rate", "particle_key", "read_track_table",
           "tracks_to_dataset", "read_case_conditions", "table_dataset", "Trajectories",
           "resample_tracks", "uniform_times", "read_table", "track_table", "case_conditions",
           "ImportMapping", "load_mapping"]
