"""Worked example: persistence scores on real ERA5 (the sample in cfgrib's test data).

    .venv/bin/python experiments/geoformer/era5_sample_persistence.py [path/to/file.grib]

Opens the GRIB through the package's loader (short names z/t, isobaricInhPa, number and
units 'm**2 s**-2' are mapped to the internal schema), forecasts persistence from every
initial time of member 0 and scores it with the WeatherBench 2 metric code.
"""

import sys
from pathlib import Path

import pandas as pd

from geoformer.references import persistence
from geoformer.schema import open_dataset
from geoformer.scores import score_table

DEFAULT = Path(__file__).parents[2] / "tests" / "data" / "era5" / "era5-levels-members.grib"


def main(path: Path = DEFAULT) -> pd.DataFrame:
    ds = open_dataset(path).load()
    truth = ds.sel(number=0).drop_vars("number")
    leads = pd.to_timedelta([12, 24, 36], unit="h")
    inits = truth.time.values[:1]  # the only initial time with all three leads in the file
    table = score_table({"persistence": persistence(truth, inits, leads)}, truth)
    # 12 h persistence over all three initial times that have a 12 h successor
    twelve = score_table({"persistence": persistence(truth, truth.time.values[:3],
                                                     leads[:1])}, truth)
    return pd.concat([table, twelve.assign(forecast="persistence (3 inits)")])


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    scores = main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
    print(scores[scores.metric == "rmse"].drop(columns=["metric", "region"]).to_string(
        index=False, float_format=lambda v: f"{v:.2f}"))
