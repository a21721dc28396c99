"""geoformer.linear: the oneDNN route of the linear layers gives F.linear's numbers and
gradients, is taken where it claims to be, and leaves the parameters as nn.Linear's."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Mlp as TimmMlp

from geoformer import linear as lin
from tests.conftest import random_inputs, tiny_model

needs_onednn = pytest.mark.skipif(not lin.onednn_enabled(), reason="no oneDNN CPU product")


@pytest.fixture
def calls(monkeypatch):
    """How often the oneDNN product ran."""
    seen = []
    product = lin._product

    def spy(*args, **kwargs):
        seen.append(args[0].shape)
        return product(*args, **kwargs)
    monkeypatch.setattr(lin, "_product", spy)
    return seen


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gelu", [False, True])
def test_forward_equals_f_linear(calls, bias, gelu):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 48, generator=g)
    w, b = torch.randn(40, 48, generator=g), torch.randn(40, generator=g) if bias else None
    expected = F.linear(x, w, b)
    expected = F.gelu(expected) if gelu else expected
    got = lin.linear(x, w, b, gelu=gelu)
    assert calls, "the oneDNN product was not used"
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
def test_gradients_equal_f_linear(calls, gelu):
    g = torch.Generator().manual_seed(1)
    x0, w0, b0 = (torch.randn(4, 7, 24, generator=g), torch.randn(16, 24, generator=g),
                  torch.randn(16, generator=g))
    up = torch.randn(4, 7, 16, generator=g)
    grads = []
    for route in (True, False):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        with lin.use_onednn(route):
            (lin.linear(x, w, b, gelu=gelu) * up).sum().backward()
        grads.append((x.grad, w.grad, b.grad))
    assert calls, "the oneDNN product was not used"
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_falls_back_to_f_linear(calls):
    x, w = torch.randn(5, 8), torch.randn(3, 8)
    with lin.use_onednn(False):
        torch.testing.assert_close(lin.linear(x, w), F.linear(x, w))
    torch.testing.assert_close(lin.linear(x.double(), w.double()), F.linear(x.double(),
                                                                          w.double()))
    strided = torch.randn(8, 5).t()  # not contiguous
    torch.testing.assert_close(lin.linear(strided, w), F.linear(strided, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's bf16 product
        assert lin.linear(x, w).dtype == torch.bfloat16
    assert not calls


def test_mlp_has_timm_parameters():
    torch.manual_seed(0)
    ours, timm = lin.Mlp(12, 48), TimmMlp(12, 48)
    assert list(ours.state_dict()) == list(timm.state_dict())
    timm.load_state_dict(ours.state_dict())
    x = torch.randn(3, 12)
    torch.testing.assert_close(ours(x), timm(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), timm(x), rtol=1e-5, atol=1e-6)


@needs_onednn
def test_network_same_with_and_without_onednn(calls):
    model = tiny_model()
    upper, surface = random_inputs(model.config)
    outs, grads = [], []
    for route in (True, False):
        model.zero_grad()
        with lin.use_onednn(route):
            with torch.no_grad():
                outs.append(model(upper, surface))
            loss = sum(o.abs().mean() for o in model(upper, surface))
            loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert calls, "the oneDNN product was not used"
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize("wants", ["x", "w"])
def test_one_sided_gradients(calls, wants):
    x, w = torch.randn(6, 10), torch.randn(4, 10)
    (x if wants == "x" else w).requires_grad_()
    lin.linear(x, w).sum().backward()
    assert calls
    expected = torch.ones(6, 4) @ w if wants == "x" else torch.ones(6, 4).t() @ x
    torch.testing.assert_close((x if wants == "x" else w).grad, expected)


@needs_onednn
def test_every_layer_takes_the_route_and_flops_are_counted(calls):
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_model().eval()
    upper, surface = random_inputs(model.config, batch=1)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with torch.no_grad():
        model(upper, surface)
    mlps = sum(isinstance(m, lin.Mlp) for m in model.modules())
    assert len(calls) == linears and linears > mlps > 0  # the MLP's pair are counted as two
    counted = []
    for route in (True, False):
        with lin.use_onednn(route), torch.no_grad(), FlopCounterMode(display=False) as c:
            model(upper, surface)
        counted.append(c.get_total_flops())
    assert counted[0] == counted[1] > 0  # under the counter the route steps aside


@needs_onednn
def test_checkpointed_blocks_recompute_with_their_forward_route(calls):
    model = tiny_model(checkpoint_activations=True)
    upper, surface = random_inputs(model.config)
    grads = []
    for route in (False, True):
        model.zero_grad()
        with lin.use_onednn(route):
            loss = sum(o.abs().mean() for o in model(upper, surface))
        loss.backward()  # outside the block: the recompute keeps the forward's route
        grads.append([p.grad.clone() for p in model.parameters()])
    assert calls
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
