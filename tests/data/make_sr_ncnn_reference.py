"""Regenerate sr_ncnn_reference.npz: outputs of the real ncnn runtime on tiny inputs.

The reference comes from Tencent's ncnn itself (the ``ncnn`` PyPI package, CPU,
fp32 everywhere), not from canstyle, so tests/test_sr_ncnn.py checks our reader
and PyTorch networks against an independent implementation. ncnn is not a
canstyle dependency; install it aside to rerun this:

    pip install --target /tmp/ncnn_ref ncnn
    PYTHONPATH=/tmp/ncnn_ref python tests/data/make_sr_ncnn_reference.py
"""

from __future__ import annotations

from pathlib import Path

import ncnn
import numpy as np

from canstyle.sr.zoo import ncnn_files

# (model, input side, output blob): sides give 32x32 (upconv_7) and 16x16 (CUNet) outputs.
CASES = [("photo", 30, "Eltwise4"), ("cunet", 44, "Eltwise4")]
# ncnn names the upconv_7 output blob "Eltwise4" too (a leftover of the Caffe export).


def tiny_input(side: int, seed: int) -> np.ndarray:
    """Deterministic 3 x side x side uint8 test pattern: gradients, a hard edge, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = np.stack([xx, yy, 0.5 + 0.4 * np.sin(6 * xx + 4 * yy)])
    img[:, : side // 2, side // 3 :] *= 0.3
    img += rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def run_ncnn(model: str, x: np.ndarray, blob: str) -> np.ndarray:
    param, bin_path = ncnn_files(model)
    net = ncnn.Net()
    for opt in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed",
                "use_bf16_storage", "use_packing_layout"):
        setattr(net.opt, opt, False)
    net.opt.num_threads = 1
    net.load_param(str(param))
    net.load_model(str(bin_path))
    ex = net.create_extractor()
    data = np.ascontiguousarray(x.astype(np.float32) / 255.0)  # ncnn.Mat borrows this buffer: keep it alive
    ex.input("Input1", ncnn.Mat(data))
    _, out = ex.extract(blob)
    return np.array(out, dtype=np.float32)


def main() -> None:
    arrays = {}
    for i, (model, side, blob) in enumerate(CASES):
        x = tiny_input(side, seed=i)
        arrays[f"{model}_input"] = x
        arrays[f"{model}_output"] = run_ncnn(model, x, blob)
    out = Path(__file__).with_name("sr_ncnn_reference.npz")
    np.savez_compressed(out, ncnn_version=np.array(ncnn.__version__), **arrays)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
