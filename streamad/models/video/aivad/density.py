"""AI-VAD's density estimators (anomalib ``models.video.ai_vad.density``).

* :class:`DensityEstimator`: what every per-stream estimator shares: a raw density per region (higher = more
  anomalous), min-max normalised with statistics of the training features.
* :class:`GMMEstimator`: Gaussian mixture (scikit-learn), density = negative log-likelihood, min-max normalised
  with the training features' own NLL (anomalib ``GMMEstimator``).
* :class:`CombinedDensityEstimator`: one estimator per feature stream; region score = sum over streams of the
  normalised stream scores; frame score = sum over streams of the per-stream maximum (0 without regions).
  A feature row of NaN means "this region has no such attribute" (e.g. no pose for a region that is not a
  person, with ``pose_features.persons_only``): the row gets 0 from that stream and does not count in its maximum.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from streamad.errors import ModelError
from streamad.models.components.blas_threads import one_blas_thread

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

__all__ = ["DensityEstimator", "GMMEstimator", "CombinedDensityEstimator", "FEATURE_TRANSFORMS", "rows_with_attribute"]

#: Element-wise feature transforms applied before the GMM (streamad extension; anomalib uses the raw features).
FEATURE_TRANSFORMS = ("none", "log1p")


def rows_with_attribute(features: np.ndarray) -> np.ndarray:
    """``(M,) bool``: the rows of ``(M, D)`` features that are not NaN (the regions that have the attribute)."""
    x = np.asarray(features)
    return ~np.isnan(x).any(axis=1) if x.ndim == 2 else np.ones(len(x), bool)


class DensityEstimator(abc.ABC):
    """Base of the per-stream density estimators: :meth:`predict` gives each region's raw density (higher = more
    anomalous, in the estimator's own units), min-max normalised with the statistics ``fit`` set from the training
    features.

    Attributes:
        min, max: the training statistics (raw density units; 0 and 1 until ``fit`` or ``from_state`` sets them).
    """

    min: float = 0.0
    max: float = 1.0

    @property
    @abc.abstractmethod
    def fitted(self) -> bool:
        """True once ``fit`` (or ``from_state``) has run."""

    @abc.abstractmethod
    def _density(self, features: np.ndarray) -> np.ndarray:
        """``(M,) float64`` raw density of ``M >= 1`` rows of ``(M, D)`` features.

        Raises:
            ModelError: ``D`` differs from the training features' width.
        """

    def predict(self, features: np.ndarray, normalize: bool = True) -> np.ndarray:
        """``(M,) float32`` density of ``(M, D)`` features, min-max normalised with the training statistics
        (``(d - min) / (max - min)``, not clipped) when ``normalize``.

        Raises:
            ModelError: not fitted, or ``D`` differs from the training features' width.
        """
        if not self.fitted:
            raise ModelError(f"{type(self).__name__} used before fit")
        if len(features) == 0:
            return np.zeros((0,), np.float32)
        d = self._density(features)
        if normalize:
            d = (d - self.min) / max(self.max - self.min, 1e-12)
        return d.astype(np.float32)


class GMMEstimator(DensityEstimator):
    """Gaussian-mixture density of region features (anomalib ``GMMEstimator``): a region's density is the negative
    log-likelihood of its features under the mixture.

    Args:
        n_components: mixture components (anomalib ``n_components_velocity``).
        seed: random state of the EM initialisation (fits are reproducible).
        reg_covar: added to the covariance diagonal, in the squared units of the (transformed) features, e.g.
            square pixels for velocity features (scikit-learn default 1e-6). streamad extension when changed: a
            floor such as 0.01 px^2 (0.1 px standard deviation) keeps near-constant feature dimensions (regions
            that barely move) from making the density infinitely sharp, so that flow noise of a tenth of a pixel
            does not produce huge NLLs.
        transform: ``"none"`` (anomalib) or ``"log1p"`` (streamad extension: ``log(1 + x)`` of every feature before
            the GMM, which compresses large speeds; features must be > -1).

    Raises:
        ValueError: an unknown ``transform``.
    """

    def __init__(self, n_components: int = 2, seed: int = 0, reg_covar: float = 1e-6,
                 transform: Literal["none", "log1p"] = "none") -> None:
        if transform not in FEATURE_TRANSFORMS:
            raise ValueError(f"GMMEstimator transform must be one of {FEATURE_TRANSFORMS}, got {transform!r}")
        self.n_components = n_components
        self.seed = seed
        self.reg_covar = reg_covar
        self.transform = transform
        self.gmm: GaussianMixture | None = None

    def _prepare(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"GMMEstimator expects (N, D) features, got shape {x.shape}")
        return np.log1p(x) if self.transform == "log1p" else x

    def fit(self, features: np.ndarray) -> None:
        """Fit on ``(N, D) float32`` training features and set the min-max statistics of their NLL.

        EM runs with one BLAS/OpenMP thread: the problem is small (a few thousand rows of a few columns) and idle
        worker threads spinning on a busy 2-core machine made the fit 10-50x slower.

        Raises:
            ValueError: fewer samples than components, or features that are not ``(N, D)``.
        """
        x = self._prepare(features)
        if len(x) < self.n_components:
            raise ValueError(f"GMM with {self.n_components} components needs at least as many training regions, "
                             f"got {len(x)}")
        from sklearn.mixture import GaussianMixture  # on use: scikit-learn takes a second to import

        self.gmm = GaussianMixture(self.n_components, covariance_type="full", reg_covar=self.reg_covar,
                                   random_state=self.seed)
        with one_blas_thread():
            self.gmm.fit(x)
            nll = -self.gmm.score_samples(x)
        self.min, self.max = float(nll.min()), float(nll.max())

    @property
    def fitted(self) -> bool:
        return self.gmm is not None

    def _density(self, features: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of the rows."""
        assert self.gmm is not None
        x = self._prepare(features)
        dims = self.gmm.means_.shape[1]
        if x.shape[1] != dims:
            raise ModelError(f"GMMEstimator was fitted on {dims}-d features but got {x.shape[1]}-d: the feature "
                             f"operators' settings differ from those the model was fitted with (refit the model)")
        return -self.gmm.score_samples(x)

    def state(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Params and arrays that restore this estimator (no pickle)."""
        g = self.gmm
        if g is None:
            raise ModelError("GMMEstimator has not been fitted")
        params = {"n_components": self.n_components, "seed": self.seed, "reg_covar": self.reg_covar,
                  "transform": self.transform, "min": self.min, "max": self.max}
        arrays = {f"{prefix}.weights": g.weights_, f"{prefix}.means": g.means_,
                  f"{prefix}.covariances": g.covariances_, f"{prefix}.precisions_cholesky": g.precisions_cholesky_}
        return params, arrays

    @classmethod
    def from_state(cls, prefix: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> "GMMEstimator":
        """Rebuild from :meth:`state`. Raises :class:`ModelError` when an array is missing or the transform is
        unknown."""
        try:
            est = cls(int(params["n_components"]), int(params.get("seed", 0)), float(params.get("reg_covar", 1e-6)),
                      params.get("transform", "none"))
        except ValueError as exc:
            raise ModelError(f"model weights for {prefix!r}: {exc}") from None
        from sklearn.mixture import GaussianMixture  # on use: scikit-learn takes a second to import

        try:
            g = GaussianMixture(est.n_components, covariance_type="full")
            g.weights_ = arrays[f"{prefix}.weights"]
            g.means_ = arrays[f"{prefix}.means"]
            g.covariances_ = arrays[f"{prefix}.covariances"]
            g.precisions_cholesky_ = arrays[f"{prefix}.precisions_cholesky"]
        except KeyError as exc:
            raise ModelError(f"model weights lack array {exc.args[0]!r}") from None
        g.converged_, g.n_iter_, g.lower_bound_ = True, 0, 0.0
        g.n_features_in_ = g.means_.shape[1]
        est.gmm = g
        est.min, est.max = float(params["min"]), float(params["max"])
        return est


class CombinedDensityEstimator:
    """One density estimator per feature stream, combined as anomalib ``CombinedDensityEstimator``.

    Args:
        estimators: ``{stream name: estimator}`` (each with ``fit``, ``predict``).
    """

    def __init__(self, estimators: dict[str, Any]) -> None:
        self.estimators = estimators

    def predict(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
        """Region scores ``(M,) float32`` (sum over streams), frame score (sum over streams of the per-stream
        maximum; 0 without regions) and per-stream region scores."""
        contributions: dict[str, np.ndarray] = {}
        frame = 0.0
        m = None
        for name, est in self.estimators.items():
            x = np.asarray(features[name])
            has = rows_with_attribute(x)
            s = np.zeros(len(x), np.float32)
            if has.any():
                s[has] = est.predict(x[has])
                frame += float(s[has].max())
            contributions[name] = s
            m = len(s)
        region = np.sum(list(contributions.values()), axis=0).astype(np.float32) if m else np.zeros(0, np.float32)
        return region, frame, contributions
