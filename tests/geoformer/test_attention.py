"""The Earth-specific bias index and the two attention paths."""

import itertools

import pytest
import torch

from geoformer.attention import EarthAttention, earth_position_index
from geoformer.layers import shifted_window_mask


@pytest.mark.parametrize("window", [(2, 6, 12), (2, 4, 8), (2, 3, 5), (1, 2, 2)])
def test_bias_index_uses_every_row_and_shares_rows_exactly_for_equal_geometry(window):
    wz, wh, ww = window
    index = earth_position_index(window)  # (N, N)
    N = wz * wh * ww
    rows = (2 * ww - 1) * wh**2 * wz**2
    assert index.shape == (N, N)
    assert sorted(set(index.flatten().tolist())) == list(range(rows))
    coords = list(itertools.product(range(wz), range(wh), range(ww)))  # token order (z, h, w)
    row_of_key: dict[tuple, int] = {}
    key_of_row: dict[int, tuple] = {}
    for (q, (zq, hq, wq)), (k, (zk, hk, wk)) in itertools.product(enumerate(coords), repeat=2):
        key = (zq, zk, hq, hk, wq - wk)  # absolute level/latitude, relative longitude
        row = int(index[q, k])
        assert row_of_key.setdefault(key, row) == row  # same geometry -> same row
        assert key_of_row.setdefault(row, key) == key  # same row -> same geometry


def test_released_window_has_3312_rows():
    assert int(earth_position_index((2, 6, 12)).max()) + 1 == 3312


def _attention(implementation, seed=0):
    torch.manual_seed(seed)
    return EarthAttention(dim=16, heads=2, window=(2, 2, 4), window_types=6,
                          implementation=implementation)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_path_equals_reference_path(masked):
    sdpa, ref = _attention("sdpa"), _attention("reference")
    ref.load_state_dict(sdpa.state_dict())
    with torch.no_grad():  # a bias large enough to matter
        sdpa.bias_table.normal_(0, 1.0)
        ref.bias_table.copy_(sdpa.bias_table)
    x = torch.randn(3, 6, 16, 16, requires_grad=True)  # (B*nLon, nT, N, C)
    mask = shifted_window_mask((4, 6, 4), (2, 2, 4), (1, 1, 2)) if masked else None
    out_s, out_r = sdpa(x, mask), ref(x, mask)
    torch.testing.assert_close(out_s, out_r, rtol=1e-5, atol=1e-5)
    g_s = torch.autograd.grad(out_s.square().sum(), [x, sdpa.bias_table])
    g_r = torch.autograd.grad(out_r.square().sum(), [x, ref.bias_table])
    for a, b in zip(g_s, g_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_fused_inference_path_equals_the_training_path_and_the_reference(masked):
    # without a gradient the fused SDPA kernel runs; with one, the batched multiply-add
    sdpa, ref = _attention("sdpa"), _attention("reference")
    with torch.no_grad():
        sdpa.bias_table.normal_(0, 1.0)
    ref.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 6, 16, 16)
    mask = shifted_window_mask((4, 6, 4), (2, 2, 4), (1, 1, 2)) if masked else None
    training = sdpa(x, mask)
    assert training.requires_grad
    with torch.no_grad():
        inference = sdpa(x, mask)
        reference = ref(x, mask)
    torch.testing.assert_close(inference, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(training.detach(), reference, rtol=1e-5, atol=1e-5)


def test_bias_changes_attention_per_window_type():
    attn = _attention("reference")
    with torch.no_grad():
        attn.bias_table.normal_(0, 1.0)
    x = torch.randn(1, 1, 16, 16).expand(1, 6, 16, 16)  # same tokens in every window type
    out = attn(x)
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_bias_table_is_a_parameter_and_index_a_non_persistent_buffer():
    attn = _attention("sdpa")
    assert attn.bias_table.shape == ((2 * 4 - 1) * 2**2 * 2**2, 6, 2)
    assert "bias_table" in dict(attn.named_parameters())
    assert "position_index" not in attn.state_dict()


def test_unknown_attention_implementation_is_an_error():
    with pytest.raises(ValueError, match="'sdpa' or 'reference'"):
        EarthAttention(8, 2, (2, 2, 2), 1, implementation="flash")
