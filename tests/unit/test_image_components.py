"""The image models' components against independent references (SciPy, scikit-learn, brute force)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats
from scipy.spatial.distance import mahalanobis
from sklearn.decomposition import PCA as SkPCA

from streamad.models.components.gaussian_blur import GaussianBlur2d, gaussian_kernel_size
from streamad.models.components.kcenter_greedy import k_center_greedy
from streamad.models.components.kde import GaussianKDE
from streamad.models.components.multivariate_gaussian import GaussianNLL, PatchGaussian, mahalanobis_map
from streamad.models.components.pca import PCA
from streamad.models.components.random_projection import project_features
from streamad.models.components.upsample_blur import UpsampleBlur


def test_gaussian_blur_matches_scipy_with_anomalib_kernel() -> None:
    """sigma 4 -> kernel 33 (anomalib); torch "reflect" padding is SciPy's "mirror" (the edge is not repeated)."""
    assert gaussian_kernel_size(4) == 33
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 48, 40)).astype(np.float32)
    out = GaussianBlur2d(4.0)(torch.from_numpy(x)).numpy()
    k = np.exp(-(np.arange(33) - 16) ** 2 / 32.0)
    k /= k.sum()
    ref = ndimage.correlate1d(ndimage.correlate1d(x.astype(np.float64), k, axis=2, mode="mirror"), k, axis=3,
                              mode="mirror")
    np.testing.assert_allclose(out, ref, atol=1e-6)
    small = GaussianBlur2d(4.0)(torch.ones(1, 1, 8, 8))  # smaller than the kernel: replicated border, still exact
    np.testing.assert_allclose(small.numpy(), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        GaussianBlur2d(0)


@pytest.mark.parametrize(("mode", "grid", "size"), [
    ("bilinear", (30, 45), (240, 360)),  # PaDiM on Ped2: stride 8
    ("nearest", (30, 45), (240, 360)),   # PatchCore on Ped2
    ("bilinear", (7, 9), (20, 30)),      # a map smaller than the kernel on one side: replicated border
    ("nearest", (5, 5), (12, 40)),
])
def test_upsample_blur_is_interpolate_then_blur(mode: str, grid: tuple[int, int], size: tuple[int, int]) -> None:
    """The two matrix products give the anomaly map that resizing with ``F.interpolate`` and then blurring with
    ``GaussianBlur2d`` gives, border rule included; and repeated calls reuse the matrices."""
    x = torch.from_numpy(np.random.default_rng(2).random((3, 1, *grid)).astype(np.float32) * 10)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    ref = GaussianBlur2d(4.0)(F.interpolate(x, size=size, mode=mode, **kwargs))
    ub = UpsampleBlur(size, 4.0, mode)
    out = ub(x)
    assert out.shape == (3, 1, *size) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert ub.matrices(*grid)[0] is ub.matrices(*grid)[0]
    with pytest.raises(ValueError, match="mode must be"):
        UpsampleBlur(size, 4.0, "bicubic")  # type: ignore[arg-type]


def test_k_center_greedy_is_the_farthest_point_sequence() -> None:
    """Without projection every chosen point is the one farthest from all points chosen before it (the random
    start point only seeds the first choice, as in anomalib)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    idx = k_center_greedy(x, 0.05, seed=3)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    start = int(np.random.default_rng(3).integers(400))
    centres = [start]
    for i, chosen in enumerate(idx):
        d = np.min(((x[:, None, :] - x[centres][None]) ** 2).sum(-1), axis=1)
        d[idx[:i]] = -1  # already chosen
        assert chosen == int(np.argmax(d))
        centres.append(int(chosen))
    with pytest.raises(ValueError, match="sampling_ratio"):
        k_center_greedy(x, 0.0)


def test_sparse_projection_only_reduces() -> None:
    x = np.random.default_rng(0).normal(size=(5000, 152)).astype(np.float32)
    assert project_features(x) is x  # the JL bound for eps 0.9 exceeds 152: nothing to gain
    y = project_features(x, n_components=32, seed=1)
    assert y.shape == (5000, 32) and y.dtype == np.float32
    d_in = np.linalg.norm(x[:50, None] - x[None, :50], axis=-1)
    d_out = np.linalg.norm(y[:50, None] - y[None, :50], axis=-1)
    ratio = d_out[d_in > 0] / d_in[d_in > 0]
    assert 0.5 < ratio.mean() < 1.5  # distances kept in expectation


def test_patch_gaussian_incremental_equals_numpy_and_mahalanobis_equals_scipy() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(30, 4, 3, 2)).astype(np.float32)
    g = PatchGaussian()
    for i in range(0, 30, 7):  # uneven batches
        g.update(torch.from_numpy(emb[i:i + 7]))
    mean, inv = g.compute()
    flat = emb.reshape(30, 4, 6)
    for p in range(6):
        cov = np.cov(flat[:, :, p], rowvar=False) + 0.01 * np.eye(4)
        np.testing.assert_allclose(mean[:, p].numpy(), flat[:, :, p].mean(0), atol=1e-5)
        np.testing.assert_allclose(inv[p].numpy(), np.linalg.inv(cov), rtol=1e-4, atol=1e-4)
    test = rng.normal(size=(2, 4, 3, 2)).astype(np.float32)
    dist = mahalanobis_map(torch.from_numpy(test), mean, inv).numpy()
    assert dist.shape == (2, 1, 3, 2)
    for n in range(2):
        for p in range(6):
            ref = mahalanobis(test[n].reshape(4, 6)[:, p], mean[:, p].numpy(), inv[p].numpy())
            assert dist[n, 0].reshape(-1)[p] == pytest.approx(ref, rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        PatchGaussian().compute()


def test_gaussian_nll_is_minus_twice_the_log_likelihood() -> None:
    """anomalib's SingleClassGaussian score = -2 log N(x; mean, biased covariance) - D log(2 pi)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    g = GaussianNLL()
    g.fit(x)
    test = rng.normal(size=(7, 5))
    score = g(torch.from_numpy(test).float()).numpy()
    ref = -2 * stats.multivariate_normal(x.mean(0), np.cov(x, rowvar=False, bias=True)).logpdf(test) \
        - 5 * np.log(2 * np.pi)
    np.testing.assert_allclose(score, ref, rtol=1e-4)


def test_gaussian_kde_matches_scipy_scott() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    kde = GaussianKDE().fit(x)
    test = rng.normal(size=(10, 3)) * 1.5
    ref = stats.gaussian_kde(x.T, bw_method="scott").logpdf(test.T)
    np.testing.assert_allclose(kde(torch.from_numpy(test).float()).numpy(), ref, rtol=1e-4, atol=1e-4)
    far = kde(torch.full((1, 3), 60.0)).item()  # anomalib's float32 sum would underflow to log(0) here
    assert np.isfinite(far) and far < -1000
    with pytest.raises(ValueError, match="more samples than dimensions"):
        GaussianKDE().fit(x[:3])


def test_pca_matches_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 8)) @ np.diag([5, 4, 3, 2, 1, 0.1, 0.1, 0.1])
    pca = PCA().fit(x, 0.9)
    sk = SkPCA(0.9, svd_solver="full").fit(x)
    assert pca.n_components == sk.n_components_
    z = pca(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(np.abs(z), np.abs(sk.transform(x)), atol=1e-4)
    back = pca.reconstruct(torch.from_numpy(z)).numpy() + pca.mean.numpy()
    np.testing.assert_allclose(back, sk.inverse_transform(sk.transform(x)), atol=1e-4)
    with pytest.raises(ValueError, match="exceeds"):
        PCA().fit(x, 60)
