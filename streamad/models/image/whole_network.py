"""Persistence of image models whose fitted state is every array of one network trained from scratch (DRAEM, DSR):
weights, BatchNorm statistics and any other buffer (DSR's codebooks), stored under one prefix in ``weights.npz``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import nn

from streamad.models.components.module_arrays import load_module_arrays, module_arrays

__all__ = ["WholeNetworkState"]


class WholeNetworkState:
    """Mixin placed before :class:`~streamad.models.image.base.ImageModel` in the bases: implements
    ``_fitted_state`` (``({"<prefix>_arrays": count}, {"<prefix>.<name>": array})``) and ``_build_network`` (a
    fresh :meth:`_network` loaded with those arrays) for the model's whole network.

    Attributes:
        array_prefix: the arrays' prefix (the model's kind).

    Raises (``_build_network``):
        ModelError: an array missing or of another shape than the configured network's (named by the prefix).
    """

    array_prefix: ClassVar[str]

    def _network(self) -> nn.Module:
        """A fresh, unfitted network as the config describes (seeded)."""
        raise NotImplementedError

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = module_arrays(self.require_network(), f"{self.array_prefix}.")  # type: ignore[attr-defined]
        return {f"{self.array_prefix}_arrays": len(arrays)}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net = self._network()
        load_module_arrays(net, arrays, f"{self.array_prefix}.", self.array_prefix)
        return net
