"""A small reader for ncnn models (``.param`` text graph + ``.bin`` weight blobs).

Only what the waifu2x models need is supported: the layer list with its
``key=value`` parameters, and the weights of Convolution, Deconvolution,
InnerProduct and Scale layers. Layers are returned in file order, which is also
the order their weights appear in the ``.bin`` file.

Weight blobs in ``.bin`` start with a 4-byte tag: 0 (or 0x0002C056) for float32, 0x01306B47 for
float16 (data padded to 4 bytes), or a nonzero "quantisation table" tag followed
by a 256-entry float table and uint8 indices. Bias and scale vectors have no tag
and are always float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from canstyle.errors import CanstyleError

MAGIC = 7767517
TAG_FP32 = 0
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_RAW = 0x0002C056  # float32 written by newer converters
ARRAY_KEY_BASE = -23300  # keys <= this hold arrays: id = -(key) - 23300

ParamValue = int | float | list[int | float]


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, ParamValue] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    # ncnn writes floats with a '.' or an exponent; everything else is an int.
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for tok in tokens:
        key_s, sep, val = tok.partition("=")
        if not sep:
            raise CanstyleError(f"bad ncnn parameter {tok!r} in {where}")
        key = int(key_s)
        if key <= ARRAY_KEY_BASE:
            count_s, *items = val.split(",")
            if int(count_s) != len(items):
                raise CanstyleError(f"ncnn array parameter {tok!r} has the wrong length in {where}")
            params[ARRAY_KEY_BASE - key] = [_number(v) for v in items]
        else:
            params[key] = _number(val)
    return params


def parse_param(text: str, where: str = "<param>") -> list[Layer]:
    """Parse a plain-text ncnn ``.param`` file into layers."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise CanstyleError(f"not an ncnn .param file (bad magic): {where}")
    n_layers = int(lines[1][0])
    layers = []
    for ln in lines[2:]:
        typ, name, nb, nt = ln[0], ln[1], int(ln[2]), int(ln[3])
        bottoms, tops = ln[4 : 4 + nb], ln[4 + nb : 4 + nb + nt]
        layers.append(Layer(typ, name, bottoms, tops, _parse_params(ln[4 + nb + nt :], where)))
    if len(layers) != n_layers:
        raise CanstyleError(f"{where} declares {n_layers} layers but has {len(layers)}")
    return layers


class _BinReader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CanstyleError(f"ncnn weights end early: {self.where}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def raw_f32(self, n: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * n), dtype="<f4").copy()

    def tagged(self, n: int) -> np.ndarray:
        """A weight blob with its leading type tag (ncnn ModelBin type 0)."""
        tag = int.from_bytes(self._take(4), "little")
        if tag in (TAG_FP32, TAG_FP32_RAW):
            return self.raw_f32(n)
        if tag == TAG_FP16:
            blob = self._take((2 * n + 3) // 4 * 4)  # fp16 data is padded to 4 bytes
            return np.frombuffer(blob[: 2 * n], dtype="<f2").astype(np.float32)
        if tag == TAG_INT8:
            raise CanstyleError(f"int8-quantised ncnn weights are not supported: {self.where}")
        table = self.raw_f32(256)  # any other tag: 8-bit indices into a float table
        idx = np.frombuffer(self._take((n + 3) // 4 * 4)[:n], dtype=np.uint8)
        return table[idx]


def _read_layer(layer: Layer, r: _BinReader) -> None:
    p = layer.get
    if layer.type in ("Convolution", "Deconvolution", "ConvolutionDepthWise", "DeconvolutionDepthWise"):
        layer.weights["weight"] = r.tagged(int(p(6, 0)))
        if int(p(5, 0)):
            layer.weights["bias"] = r.raw_f32(int(p(0, 0)))
    elif layer.type == "InnerProduct":
        layer.weights["weight"] = r.tagged(int(p(2, 0)))
        if int(p(1, 0)):
            layer.weights["bias"] = r.raw_f32(int(p(0, 0)))
    elif layer.type == "Scale":
        n = int(p(0, 0))
        if n != -233:  # -233: the scale comes from a second input blob, no weights
            layer.weights["scale"] = r.raw_f32(n)
            if int(p(1, 0)):
                layer.weights["bias"] = r.raw_f32(n)
    elif layer.type not in ("Input", "Split", "Pooling", "Crop", "Eltwise", "ReLU", "Sigmoid",
                            "Concat", "Interp", "PixelShuffle", "BinaryOp", "Padding"):
        raise CanstyleError(f"unsupported ncnn layer type {layer.type!r} in {r.where}")


def read_model(param: str | os.PathLike[str], bin_path: str | os.PathLike[str]) -> list[Layer]:
    """Layers of an ncnn model with their weights attached as float32 arrays."""
    param, bin_path = Path(param), Path(bin_path)
    try:
        layers = parse_param(param.read_text(encoding="ascii"), str(param))
        data = bin_path.read_bytes()
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise CanstyleError(f"cannot read ncnn model {param}: {e}") from None
    reader = _BinReader(data, str(bin_path))
    for layer in layers:
        _read_layer(layer, reader)
    if reader.pos != len(data):
        raise CanstyleError(f"{bin_path} has {len(data) - reader.pos} unread bytes: wrong .param?")
    return layers


def weight_layers(layers: list[Layer]) -> list[Layer]:
    return [ly for ly in layers if ly.weights]
