"""`geoformer info`: what a user reads before training."""

import json

from geoformer.cli import main


def test_info_json_reports_the_released_model(capsys):
    assert main(["info", "--preset", "pangu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 63e6 < info["parameters"] < 65.5e6
    assert [s["window_types"] for s in info["stages"]] == [124, 64, 64, 124]
    assert info["stages"][0]["tokens"] == [8, 181, 360]
    full = info["activation_bytes_per_sample"]
    assert full > info["activation_bytes_per_sample_checkpointed"] > 0


def test_info_text_with_grid_and_override(capsys):
    assert main(["info", "--preset", "pangu", "--grid", "121x240", "--set", "window=[2,6,10]",
                 "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "121 x 240" in out and "window (2, 6, 10)" in out and "shift (1, 3, 5)" in out


def test_info_times_a_small_model(capsys):
    assert main(["info", "--preset", "small-5.625", "--time", "--json", "--no-memory"]) == 0
    timing = json.loads(capsys.readouterr().out)["timing_batch1"]
    assert timing["forward_s"] > 0 and timing["train_step_s"] > 0


def test_info_explains_a_bad_configuration(capsys):
    assert main(["info", "--preset", "pangu", "--grid", "121x240"]) == 2
    err = capsys.readouterr().err
    assert "longitude" in err and "window 12" in err


def test_info_rejects_a_malformed_override(capsys):
    assert main(["info", "--set", "window"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
