"""The installed C libraries live together in one process: netCDF4, the GRIB decoder and
PROJ (cartopy) each keep their own, and a process using all three exits cleanly.

eccodes wheels from 2.43 load their eckit libraries (PROJ, sqlite, curl, OpenSSL) into the
global symbol scope; pyproj then ran on the wrong PROJ and the interpreter died at exit with
a double free (the CI of 2026-12-01). pyproject.toml pins eccodes below 2.43 for this.
"""

import subprocess
import sys
from pathlib import Path

import pytest

GFS = Path(__file__).parent / "data" / "gfs" / "gfs-2p5deg-f120-subset.grib2"

SCRIPT = """
import sys, numpy as np, xarray as xr
nc, grib = sys.argv[1:]
xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(nc, engine="netcdf4")
xr.open_dataset(nc, engine="netcdf4").load()
xr.open_dataset(grib, engine="cfgrib", backend_kwargs={"indexpath": ""},
                filter_by_keys={"typeOfLevel": "isobaricInhPa"}).load()
import pyproj
pyproj.CRS("EPSG:4326").to_wkt()
import cartopy.crs as ccrs
ccrs.PlateCarree().transform_point(10.0, 50.0, ccrs.Geodetic())
print("done")
"""


def test_netcdf_grib_and_proj_in_one_process_exit_cleanly(tmp_path):
    pytest.importorskip("cfgrib")
    pytest.importorskip("cartopy")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "a.nc"), str(GFS)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "done" in run.stdout, run.stderr[-2000:]
