"""CLIP for WinCLIP, built by the ``open_clip_torch`` package (``pip install 'streamad[clip]'``) from a **local**
weights file: the architecture is created with ``pretrained=None`` (random initialisation, nothing downloaded) and
the user's checkpoint is then loaded strictly and safely (safetensors, or ``torch.load(weights_only=True)`` through
:func:`~streamad.models.components.state_dict.load_strict`; open_clip's own loader would fall back to an
unrestricted ``torch.load``).

anomalib's WinCLIP uses open_clip's ``ViT-B-16-plus-240`` with the ``laion400m_e31`` weights: the file to give is
that checkpoint (e.g. ``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors`` of the Hugging Face
repository ``timm/vit_base_patch16_plus_240.laion400m_e31``, or the original ``vit_b_16_plus_240-laion400m_e31``
``.pt``), a whole-CLIP state dict (image and text towers) in open_clip's key layout.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from streamad.errors import ModelError
from streamad.models.components.state_dict import load_strict

__all__ = ["DEFAULT_ARCHITECTURE", "WEIGHTS_HINT", "import_open_clip", "clip_geometry", "load_clip"]

#: anomalib's CLIP (``BACKBONE`` in anomalib's ``winclip/torch_model.py``).
DEFAULT_ARCHITECTURE = "ViT-B-16-plus-240"
WEIGHTS_HINT = ("a local open_clip checkpoint of the whole CLIP model in open_clip's layout (for ViT-B-16-plus-240, "
                "anomalib's: laion400m_e31, e.g. open_clip_model.safetensors or open_clip_pytorch_model.bin of "
                "timm/vit_base_patch16_plus_240.laion400m_e31); nothing is downloaded")


def import_open_clip() -> ModuleType:
    """The ``open_clip`` module.

    Raises:
        ModelError: ``open_clip_torch`` is not installed (the message says how to install it).
    """
    try:
        import open_clip
    except ImportError:
        raise ModelError("winclip needs the package open_clip_torch: pip install 'streamad[clip]'") from None
    return open_clip


def clip_geometry(architecture: str) -> tuple[int, tuple[int, int]]:
    """``(input side in pixels, (gh, gw) patch grid)`` of open_clip ViT ``architecture``.

    Raises:
        ValueError: not an open_clip model name, or not a plain ViT image tower (ResNet, timm or attention-pooled
            towers have no patch tokens that windows could select).
        ModelError: open_clip_torch is not installed.
    """
    cfg = import_open_clip().get_model_config(architecture)
    if cfg is None:
        raise ValueError(f"unknown CLIP architecture {architecture!r} (an open_clip model name such as "
                         f"{DEFAULT_ARCHITECTURE!r})")
    vision = cfg.get("vision_cfg", {})
    plain_vit = (isinstance(vision.get("layers"), int) and not vision.get("timm_model_name")
                 and not vision.get("attentional_pool") and vision.get("pool_type", "tok") == "tok"
                 and not vision.get("final_ln_after_pool") and not vision.get("no_ln_pre"))
    if not plain_vit:
        raise ValueError(f"CLIP architecture {architecture!r} is not a plain ViT image tower with a class token; "
                         f"WinCLIP needs one (e.g. {DEFAULT_ARCHITECTURE!r})")
    side = int(vision["image_size"]) if not isinstance(vision["image_size"], (list, tuple)) else int(
        vision["image_size"][0])
    patch = int(vision["patch_size"])
    return side, (side // patch, side // patch)


def load_clip(architecture: str, weights: str | Path | None) -> Any:
    """The open_clip ``CLIP`` model ``architecture`` with the weights of the local file ``weights``, in eval mode.

    Raises:
        ModelError: no ``weights`` or a missing / unreadable file (the message names the path and what to give),
            open_clip_torch missing, or a file that does not match the architecture.
    """
    what = f"winclip CLIP {architecture}"
    if weights is None:
        raise ModelError(f"{what}: no weights configured: set `weights` to {WEIGHTS_HINT}")
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"{what}: weights file not found: {path}; give {WEIGHTS_HINT}")
    clip_geometry(architecture)  # a clear error for an unsupported architecture
    open_clip = import_open_clip()
    model = open_clip.create_model(architecture, pretrained=None)
    load_strict(model, path, what)
    return model.float().eval()
