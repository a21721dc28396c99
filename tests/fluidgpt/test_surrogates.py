"""Direct conditions -> erosion surrogates (knn, pod): by-hand weights, the nearest case as
k = 1, exact recovery of a low-rank family, determinism, errors. Tiny synthetic maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from fluidgpt.baselines import NearestCase
from fluidgpt.metrics import erosion_pattern_r2_over_cases_and_faces
from fluidgpt.surrogates import InverseDistanceErosion, PODErosion, idw_weights, pod_modes

FACES = np.linspace(0.0, 1.0, 40)  # (F,) face positions along a wall [m]


def bump(at: float, width: float = 0.06) -> np.ndarray:
    return np.exp(-0.5 * ((FACES - at) / width) ** 2)  # (F,)


def low_rank_family(c: np.ndarray) -> np.ndarray:
    """Maps (N, F) = a(c) m1 + b(c) m2 of conditions c (N, 2) in [-1, 1]: two hot spots whose
    strengths change smoothly (a > b everywhere, so the peak is always on m1)."""
    a = 3.0 * np.exp(0.5 * c[:, 0] + 0.3 * c[:, 1])  # (N,)
    b = 0.6 + 0.3 * np.sin(1.5 * c[:, 0] + c[:, 1])  # (N,)
    return 1e-6 * (a[:, None] * bump(0.25) + b[:, None] * bump(0.75))  # (N, F)


def grid(n: int, lim: float = 1.0) -> np.ndarray:
    x = np.linspace(-lim, lim, n)
    return np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)  # (n*n, 2)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def maps(x) -> xr.DataArray:
    return xr.DataArray(np.asarray(x, float), dims=("case", "face"))


# ------------------------------------------------------------------------------- knn
def test_idw_weights_by_hand():
    train = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    # Distances 1, 2 and sqrt(5) from (1, 0): the two nearest weigh 1 and 1/4 -> 0.8, 0.2.
    w = idw_weights(np.array([[1.0, 0.0]]), train, k=2)
    np.testing.assert_allclose(w, [[0.8, 0.2, 0.0]])
    # A query on a training case takes that case alone.
    np.testing.assert_allclose(idw_weights(train[1:2], train, k=3), [[0.0, 1.0, 0.0]])
    # k beyond the training cases blends them all.
    assert (idw_weights(np.array([[1.0, 1.0]]), train, k=10) > 0).all()


def test_knn_with_k_1_is_the_nearest_case():
    g = np.random.default_rng(0)
    train, query = t(g.normal(size=(12, 3))), t(g.normal(size=(5, 3)))
    erosion = t(g.random((12, 7)))
    knn = InverseDistanceErosion(k=1).fit(train, erosion).predict(query)
    nearest = NearestCase().fit(train, erosion=erosion).predict(query)
    torch.testing.assert_close(knn["erosion"], nearest["erosion"])
    torch.testing.assert_close(knn["peak"], nearest["erosion"].max(1).values)


def test_knn_halfway_between_two_cases_is_their_mean():
    train = t([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    erosion = t([[1.0, 4.0, 0.0], [3.0, 0.0, 2.0], [9.0, 9.0, 9.0]])
    pred = InverseDistanceErosion(k=2).fit(train, erosion).predict(t([[1.0, 0.0]]))
    torch.testing.assert_close(pred["erosion"], t([[2.0, 2.0, 1.0]]))
    # The peak is the same blend of the peaks (4 and 3), not the blend's own maximum (2).
    torch.testing.assert_close(pred["peak"], t([3.5]))


# ------------------------------------------------------------------------------- pod
def test_pod_modes_keep_the_energy_asked_for():
    # Centred maps with singular values 3 and 1: shares 0.9 and 0.1 of the variance.
    u = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]) / 2  # orthonormal
    v = np.eye(2, 5)  # (2, F) orthonormal modes
    x = 7.0 + u @ np.diag([3.0, 1.0]) @ v  # (4, 5)
    mean, modes, coeff = pod_modes(x, energy=0.9)
    assert modes.shape == (1, 5) and coeff.shape == (4, 1)
    np.testing.assert_allclose(mean, np.full(5, 7.0))
    assert pod_modes(x, energy=0.95)[1].shape == (2, 5)
    assert pod_modes(x, energy=0.95, max_modes=1)[1].shape == (1, 5)
    m, modes, c = pod_modes(x, energy=1.0)
    np.testing.assert_allclose(m + c @ modes, x, atol=1e-12)  # all modes: exact
    assert pod_modes(np.ones((3, 5)))[1].shape == (0, 5)  # equal maps: no mode


def test_pod_reproduces_a_training_map_at_its_own_conditions():
    c = grid(6)
    e = low_rank_family(c)
    model = PODErosion().fit(t(c), t(e))
    pred = model.predict(t(c[[7, 20]]))["erosion"].double().numpy()
    np.testing.assert_allclose(pred, e[[7, 20]], rtol=0, atol=1e-3 * e.max())


def test_pod_recovers_a_low_rank_family_at_held_out_conditions():
    train = grid(6)
    held_out = np.random.default_rng(1).uniform(-0.8, 0.8, size=(10, 2))
    model = PODErosion().fit(t(train), t(low_rank_family(train)))
    # Each shape (map / its total) is a blend of the two hot spots with a total of 1: a line.
    assert model.n_modes == 1
    pred = model.predict(t(held_out))
    true = maps(low_rank_family(held_out))
    r2 = erosion_pattern_r2_over_cases_and_faces(maps(pred["erosion"].double()), true,
                                                 xr.DataArray(pred["peak"].double(),
                                                              dims="case"))
    assert r2 > 0.99
    rel_peak = np.abs(pred["peak"].double().numpy() / true.max("face").values - 1)
    assert rel_peak.max() < 0.02
    assert (pred["erosion"] >= 0).all()
    torch.testing.assert_close(pred["pattern"], pred["erosion"] / pred["peak"][:, None])


def test_pod_is_deterministic_and_weighs_faces_by_area():
    c = grid(4)
    e = t(low_rank_family(c)) * (1 + 0.05 * torch.rand(16, 40, generator=torch.Generator()
                                                       .manual_seed(0)))
    query = t([[0.1, -0.3], [0.5, 0.5]])
    a = PODErosion(max_modes=3).fit(t(c), e).predict(query)
    b = PODErosion(max_modes=3).fit(t(c), e).predict(query)
    for key in a:
        assert torch.equal(a[key], b[key])
    area = np.linspace(1.0, 2.0, 40)
    weighted = PODErosion(max_modes=3).fit(t(c), e, face_area=area).predict(query)
    assert not torch.equal(weighted["erosion"], a["erosion"])


def test_surrogate_errors():
    c, e = t(grid(2)), t(low_rank_family(grid(2)))
    for model in (InverseDistanceErosion(), PODErosion()):
        with pytest.raises(RuntimeError, match="fit"):
            model.predict(c)
        model.fit(c, e)
        with pytest.raises(ValueError, match=r"\(B, 2\)"):
            model.predict(t(np.zeros((1, 3))))
        with pytest.raises(ValueError, match="same N"):
            type(model)().fit(c, e[:2])
    with pytest.raises(ValueError, match="no positive rate"):
        PODErosion().fit(c, e * torch.tensor([1.0, 0.0, 1.0, 1.0])[:, None])
    with pytest.raises(ValueError, match="at least 2"):
        PODErosion().fit(c[:1], e[:1])
    with pytest.raises(ValueError, match="face_area"):
        PODErosion().fit(c, e, face_area=np.ones(3))
    with pytest.raises(ValueError, match="k must be"):
        InverseDistanceErosion(k=0)
