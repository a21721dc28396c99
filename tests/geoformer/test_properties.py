"""Properties of the pure geometry over random shapes (hypothesis): window partition and
reverse, pad and crop, the padded token grids, the shifted-window mask, the Earth-specific
index, down- and up-sampling shapes, and the lead-time plan and its shared rollout.

The parametrised cases of test_layers.py and test_aggregation.py pin the released sizes;
these check the same promises on every small shape hypothesis draws, derandomised so CI
sees the same examples every run.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoformer.aggregation import UnreachableLeadTime, aggregated_rollout, plan, plans
from geoformer.attention import earth_position_index
from geoformer.config import GeoFormerConfig
from geoformer.embedding import DownSample, UpSample
from geoformer.layers import (
    MASK_VALUE,
    crop_end,
    pad_end,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
windows = st.tuples(*(st.integers(1, 4),) * 3)  # (Wz, Wh, Ww)
counts = st.tuples(*(st.integers(1, 3),) * 3)  # windows along (Z, H, W)


# ------------------------------------------------------------------- partition / reverse
@PROPERTY
@given(window=windows, count=counts, batch=st.integers(1, 2), channels=st.integers(1, 3))
def test_window_reverse_undoes_window_partition(window, count, batch, channels):
    grid = tuple(w * n for w, n in zip(window, count))
    x = torch.randn(batch, *grid, channels)
    windows_ = window_partition(x, window)
    (wz, wh, ww), (nz, nh, nw) = window, count
    assert windows_.shape == (batch * nw, nz * nh, wz * wh * ww, channels)
    assert torch.equal(window_reverse(windows_, window, grid), x)


@PROPERTY
@given(window=windows, count=counts, batch=st.integers(1, 2))
def test_window_partition_holds_each_block_in_z_h_w_order(window, count, batch):
    """Slot (b * nLon + l, t = iz * nH + ih, n) holds token (z, h, w) of block (iz, ih, l),
    n = (z * Wh + h) * Ww + w: longitude windows on the batch axis, types level-major."""
    grid = tuple(w * n for w, n in zip(window, count))
    x = torch.arange(batch * grid[0] * grid[1] * grid[2]).view(batch, *grid, 1)
    out = window_partition(x, window)[..., 0]  # (B*nLon, nT, N)
    (wz, wh, ww), (_, nh, nw) = window, count
    for b, iz, ih, il in itertools.product(range(batch), range(count[0]), range(nh), range(nw)):
        block = x[b, iz * wz:(iz + 1) * wz, ih * wh:(ih + 1) * wh, il * ww:(il + 1) * ww, 0]
        assert torch.equal(out[b * nw + il, iz * nh + ih], block.reshape(-1))


# --------------------------------------------------------------------------- pad / crop
@st.composite
def pad_cases(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=2, max_size=5))
    dims = draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=3,
                         unique_by=lambda d: d % len(shape)))
    sizes = [shape[d] + draw(st.integers(0, 4)) for d in dims]
    return shape, dims, sizes


@PROPERTY
@given(case=pad_cases())
def test_crop_end_undoes_pad_end_and_the_padding_is_zeros_at_the_end(case):
    shape, dims, sizes = case
    x = torch.rand(shape) + 1.0  # no zeros of its own
    padded = pad_end(x, sizes, dims)
    expected = list(shape)
    for size, dim in zip(sizes, dims):
        expected[dim] = size
    assert list(padded.shape) == expected
    assert torch.equal(crop_end(padded, [shape[d] for d in dims], dims), x)
    assert int((padded == 0).sum()) == padded.numel() - x.numel()  # only the added entries


@PROPERTY
@given(case=pad_cases(), less=st.integers(1, 3))
def test_pad_end_refuses_a_size_below_the_axis(case, less):
    shape, dims, _ = case
    sizes = [shape[d] for d in dims]
    sizes[0] -= less
    with pytest.raises(ValueError, match="cannot pad"):
        pad_end(torch.zeros(shape), sizes, dims)


@st.composite
def configs(draw):
    """Small valid configurations: any levels, latitudes, patch and window; longitudes made
    divisible as the config requires (stage-2 longitude tokens a multiple of Ww)."""
    patch = draw(st.tuples(*(st.integers(1, 3),) * 3))
    window = draw(st.tuples(*(st.integers(1, 4),) * 3))
    lon = patch[2] * 2 * window[2] * draw(st.integers(1, 2))
    return GeoFormerConfig(
        grid=(draw(st.integers(1, 20)), lon), levels=tuple(range(draw(st.integers(1, 6)))),
        upper_vars=("t",), surface_vars=("msl",), constant_vars=(), patch=patch,
        window=window, embed_dim=2, depths=(1, 1, 1, 1), heads=(1, 1, 1, 1), name="property")


@PROPERTY
@given(config=configs())
def test_padded_grids_are_the_smallest_whole_multiples_of_patch_and_window(config):
    Zp, Hp, Wp = config.padded_grid
    for real, padded, p in zip((len(config.levels), config.grid[0], config.grid[1]),
                               (Zp, Hp, Wp), config.patch):
        assert padded % p == 0 and 0 <= padded - real < p
    assert Wp == config.grid[1]  # longitude is never padded
    wz, wh, ww = config.window
    for stage in (1, 2, 3, 4):
        g = config.token_grid(stage)
        assert g.padded_levels % wz == 0 and 0 <= g.padded_levels - g.levels < wz
        assert g.padded_lat % wh == 0 and 0 <= g.padded_lat - g.lat < wh
        assert g.lon % ww == 0 and g.lon_windows * ww == g.lon
        assert g.window_types == (g.padded_levels // wz) * (g.padded_lat // wh)
        x = pad_end(torch.zeros(1, g.levels, g.lat, g.lon, 1),
                    (g.padded_levels, g.padded_lat), dims=(1, 2))
        assert window_partition(x, config.window).shape[:2] == (g.lon_windows,
                                                               g.window_types)


# ------------------------------------------------------------------ shifted-window mask
@st.composite
def shifted_layouts(draw):
    window = draw(windows)
    grid = tuple(w * n for w, n in zip(window, draw(counts)))
    shift = tuple(draw(st.integers(0, w - 1)) for w in window)
    return grid, window, shift


def _wrapped(grid, window, shift):
    """(nLon, nT, N, N) bool: the two tokens of a window were not neighbours in the same
    order before the roll by -shift along levels or latitudes (longitude is periodic)."""
    pos = torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij"), -1)
    before = torch.roll(pos, shifts=[-s for s in shift], dims=(0, 1, 2))  # (Z, H, W, 3)
    after = window_partition(pos[None].float(), window)  # (nLon, nT, N, 3)
    origin = window_partition(before[None].float(), window)
    wraps = (after[:, :, :, None] - after[:, :, None, :]) != (
        origin[:, :, :, None] - origin[:, :, None, :])  # (nLon, nT, N, N, 3)
    return wraps[..., 0] | wraps[..., 1]


@PROPERTY
@given(layout=shifted_layouts())
def test_shifted_mask_is_an_equivalence_that_separates_exactly_the_wraps(layout):
    grid, window, shift = layout
    mask = shifted_window_mask(grid, window, shift)  # (nT, N, N)
    N = window[0] * window[1] * window[2]
    assert mask.shape == ((grid[0] // window[0]) * (grid[1] // window[1]), N, N)
    assert set(mask.unique().tolist()) <= {0.0, MASK_VALUE}
    assert torch.equal(mask, mask.transpose(1, 2))  # symmetric
    assert (mask.diagonal(dim1=1, dim2=2) == 0).all()  # every token attends to itself
    same = mask == 0
    assert torch.equal(same.float() @ same.float() > 0, same)  # transitive: regions
    wrapped = _wrapped(grid, window, shift)  # the same for every longitude window
    assert torch.equal(mask.expand_as(wrapped), wrapped.float() * MASK_VALUE)


@PROPERTY
@given(window=windows, count=counts, lon_shift=st.integers(0, 3))
def test_unshifted_levels_and_latitudes_need_no_mask(window, count, lon_shift):
    grid = tuple(w * n for w, n in zip(window, count))
    shift = (0, 0, lon_shift % window[2])  # a longitude roll alone never wraps a region
    assert not shifted_window_mask(grid, window, shift).any()


# ----------------------------------------------------------------- Earth-specific index
@PROPERTY
@given(window=windows)
def test_earth_position_index_uses_every_row_once_per_relation(window):
    """Two pairs share a bias row iff they have the same (zq, zk, hq, hk, wq - wk)."""
    wz, wh, ww = window
    idx = earth_position_index(window)  # (N, N)
    rows = (2 * ww - 1) * wh**2 * wz**2
    assert idx.min() >= 0 and idx.max() < rows
    assert len(idx.unique()) == rows  # every row of the bias table is reachable
    z, h, w = (t.flatten() for t in torch.meshgrid(
        torch.arange(wz), torch.arange(wh), torch.arange(ww), indexing="ij"))
    relation = torch.stack(torch.broadcast_tensors(
        z[:, None], z[None, :], h[:, None], h[None, :], w[:, None] - w[None, :]), -1)
    keys = {}
    for r, i in zip(relation.view(-1, 5).tolist(), idx.flatten().tolist()):
        assert keys.setdefault(tuple(r), i) == i
    assert len(set(keys.values())) == len(keys)


# ------------------------------------------------------------------ down- and up-sampling
@PROPERTY
@given(lat=st.integers(1, 7), lon_pairs=st.integers(1, 4), levels=st.integers(1, 3))
def test_up_sampling_restores_the_grid_that_down_sampling_halved(lat, lon_pairs, levels):
    x = torch.randn(1, levels, lat, 2 * lon_pairs, 2)
    down = DownSample(2)(x)
    assert down.shape == (1, levels, (lat + 1) // 2, lon_pairs, 4)
    assert UpSample(4, 2, lat)(down).shape == x.shape


# ---------------------------------------------------------------------- lead-time plan
step_sets = st.sets(st.integers(1, 24), min_size=1, max_size=4)


def _reachable(available, lead: int) -> list[set[int]]:
    """reach[k]: the lead times up to ``lead`` that are sums of exactly k steps."""
    reach = [{0}]
    for _ in range(lead // min(available) + 1):
        reach.append({r + s for r in reach[-1] for s in available if r + s <= lead})
    return reach


@PROPERTY
@given(lead=st.integers(1, 72), available=step_sets)
def test_plan_is_the_fewest_steps_largest_first_or_unreachable(lead, available):
    reach = _reachable(available, lead)
    fewest = next((k for k, sums in enumerate(reach) if lead in sums), None)
    try:
        got = plan(lead, available)
    except UnreachableLeadTime as err:
        assert fewest is None, f"{lead} h is {fewest} steps of {sorted(available)}"
        assert f"{lead} h" in str(err)
        return
    assert fewest is not None
    assert sum(got) == lead and set(got) <= available and len(got) == fewest
    # the lexicographically largest plan of that length: at every step the largest model
    # that still leaves a lead reachable in the steps that remain
    left, best = lead, []
    for k in range(fewest, 0, -1):
        best.append(max(s for s in available if left - s in reach[k - 1]))
        left -= best[-1]
    assert got == best


@PROPERTY
@given(lead=st.integers(1, 24 * 21))
def test_plan_of_the_released_models_is_greedy(lead):
    left, greedy = lead, []
    for s in (24, 6, 3, 1):
        greedy += [s] * (left // s)
        left %= s
    assert plan(lead, (1, 3, 6, 24)) == greedy


@PROPERTY
@given(lead=st.integers(-48, 0), available=step_sets)
def test_plan_refuses_a_lead_that_is_not_positive(lead, available):
    with pytest.raises(ValueError, match="positive") as refused:
        plan(lead, available)
    assert not isinstance(refused.value, UnreachableLeadTime)


@PROPERTY
@given(leads=st.lists(st.integers(1, 60), min_size=1, max_size=6), available=step_sets)
def test_aggregated_rollout_yields_each_lead_once_sharing_prefixes(leads, available):
    calls: list[int] = []

    def model(step):
        def run(upper, surface):  # upper counts hours, surface counts model calls
            calls.append(step)
            return upper + step, surface + 1
        return run

    models = {s: model(s) for s in available}
    try:
        wanted = plans(leads, available)
    except UnreachableLeadTime:
        with pytest.raises(UnreachableLeadTime):
            next(aggregated_rollout(models, torch.zeros(()), torch.zeros(()), leads))
        assert calls == []  # refused before any model call
        return
    out = list(aggregated_rollout(models, torch.zeros(()), torch.zeros(()), leads))
    assert sorted(lead for lead, _ in out) == sorted(set(leads))
    for lead, (hours, steps) in out:
        assert hours.item() == lead and steps.item() == len(wanted[lead])
    prefixes = {tuple(p[:i]) for p in wanted.values() for i in range(1, len(p) + 1)}
    assert len(calls) == len(prefixes)  # every shared prefix computed once
