"""The initial times the demo and the tuning scripts forecast from: spread over a split."""

import pandas as pd

from geoformer.sources.held_suarez import split_slices, spread_initial_times

T = pd.Timestamp


def test_spread_includes_both_ends_and_keeps_the_lead_inside_the_span():
    span = slice("2000-01-01T00:00", "2000-01-03T18:00")  # 12 six-hourly times
    # candidates: 00 Jan 1 .. 18 Jan 2 (8 times, a 24 h forecast stays inside); positions
    # 0, 3.5 -> 4 (numpy rounds half to even), 7
    assert spread_initial_times(span, "24h", 3) == [T("2000-01-01T00"), T("2000-01-02T00"),
                                                    T("2000-01-02T18")]


def test_more_initial_times_than_the_span_holds_gives_each_once():
    span = slice("2000-01-01T00:00", "2000-01-02T00:00")
    assert spread_initial_times(span, "12h", 10) == [T("2000-01-01T00"), T("2000-01-01T06"),
                                                     T("2000-01-01T12")]


def test_the_demo_test_period_gives_twelve_times_five_days_before_its_end():
    test = split_slices()["test"]
    inits = spread_initial_times(test, "120h", 12)
    assert len(inits) == 12 and inits[0] == T(test.start)
    assert inits[-1] == T(test.stop) - pd.Timedelta("120h")
