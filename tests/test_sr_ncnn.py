"""The ncnn reader and the waifu2x networks against the real ncnn runtime."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from canstyle import weights
from canstyle.errors import CanstyleError
from canstyle.sr import zoo
from canstyle.sr.ncnn import TAG_FP16, parse_param, read_model, weight_layers

REF = Path(__file__).parent / "data" / "sr_ncnn_reference.npz"


pytestmark = pytest.mark.usefixtures("module_home")  # a private CANSTYLE_HOME


PARAM = """7767517
3 3
Input            in     0 1 data 0=4 1=4 2=1
Convolution      conv   1 1 data c 0=2 1=1 5=1 6=2 9=2 -23310=1,0.100000
InnerProduct     fc     1 1 c out 0=3 1=0 2=6
"""


def _bin(conv_w: np.ndarray, conv_b: np.ndarray, fc: bytes) -> bytes:
    fp16 = struct.pack("<I", TAG_FP16) + conv_w.astype("<f2").tobytes()
    fp16 += b"\0" * (-len(fp16) % 4)  # fp16 blobs are padded to 4 bytes
    return fp16 + conv_b.astype("<f4").tobytes() + fc


def test_parse_param_reads_arrays_and_floats() -> None:
    layers = parse_param(PARAM)
    assert [ly.type for ly in layers] == ["Input", "Convolution", "InnerProduct"]
    conv = layers[1]
    assert conv.bottoms == ["data"] and conv.tops == ["c"]
    assert conv.params[0] == 2 and conv.params[9] == 2
    assert conv.params[10] == [pytest.approx(0.1)]  # -23310 is the array with id 10


def test_read_model_fp16_fp32_and_table_blobs(tmp_path: Path) -> None:
    conv_w, conv_b = np.array([0.5, -1.25]), np.array([0.1, 0.2])
    # InnerProduct weights as an 8-bit quantisation table: tag with nonzero bytes, table, indices.
    table = np.zeros(256, dtype="<f4")
    table[[0, 1, 2]] = [0.0, 0.75, -2.0]
    idx = np.array([1, 2, 0, 0, 2, 1], dtype=np.uint8)
    fc = struct.pack("<I", 0x01010101) + table.tobytes() + idx.tobytes() + b"\0\0"
    (tmp_path / "m.param").write_text(PARAM)
    (tmp_path / "m.bin").write_bytes(_bin(conv_w, conv_b, fc))
    layers = weight_layers(read_model(tmp_path / "m.param", tmp_path / "m.bin"))
    np.testing.assert_array_equal(layers[0].weights["weight"], conv_w.astype(np.float32))
    np.testing.assert_allclose(layers[0].weights["bias"], conv_b, rtol=1e-7)
    np.testing.assert_array_equal(layers[1].weights["weight"], table[idx])

    # A float32 blob (tag 0) reads the same way.
    fc32 = struct.pack("<I", 0) + np.arange(6, dtype="<f4").tobytes()
    (tmp_path / "m.bin").write_bytes(_bin(conv_w, conv_b, fc32))
    fc_layer = weight_layers(read_model(tmp_path / "m.param", tmp_path / "m.bin"))[1]
    np.testing.assert_array_equal(fc_layer.weights["weight"], np.arange(6, dtype=np.float32))


def test_read_model_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "m.param").write_text(PARAM)
    good = _bin(np.ones(2), np.ones(2), struct.pack("<I", 0) + np.ones(6, dtype="<f4").tobytes())
    for data in (good[:-4], good + b"\0\0\0\0"):  # truncated, then trailing bytes
        (tmp_path / "m.bin").write_bytes(data)
        with pytest.raises(CanstyleError):
            read_model(tmp_path / "m.param", tmp_path / "m.bin")
    (tmp_path / "bad.param").write_text("12345\n0 0\n")
    with pytest.raises(CanstyleError, match="magic"):
        read_model(tmp_path / "bad.param", tmp_path / "m.bin")


@pytest.mark.parametrize("model", ["photo", "cunet"])
def test_networks_reproduce_ncnn_runtime_output(model: str) -> None:
    ref = np.load(REF)
    x = torch.from_numpy(ref[f"{model}_input"].astype(np.float32) / 255.0)[None]
    with torch.no_grad():
        out = zoo.load_model(model)(x)[0].numpy()
    expected = ref[f"{model}_output"]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_conversion_is_cached_with_sha256_and_metadata() -> None:
    zoo.load_model("photo")
    path = weights.cached_path("sr-photo")
    assert path.exists() and path.with_suffix(".sha256").exists()
    meta = weights.read_metadata(path)
    assert meta["arch"] == "upconv_7" and meta["source_sha256"] == zoo.MODELS["photo"].bin_sha256
    path.write_bytes(path.read_bytes()[:-8] + b"garbage!")  # corrupt: converted again on load
    state, _ = weights.load_weights("sr-photo")
    assert weights.sha256_file(path) == path.with_suffix(".sha256").read_text().strip()
    assert state["convs.0.weight"].shape == (16, 3, 3, 3)


def test_wheel_file_with_wrong_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = zoo.SRModel("photo", "upconv_7", "WAIFU2X_PHOTO_UP2X", "0" * 64, "tampered")
    monkeypatch.setitem(zoo.MODELS, "photo", bad)
    with pytest.raises(CanstyleError, match="sha256"):
        zoo.convert("photo")


def test_every_registered_model_has_its_files() -> None:
    for name, m in zoo.MODELS.items():
        assert zoo.weight_name(name) in weights.REGISTRY
        if m.asset:
            assert zoo.asset_path(m).exists()
        else:
            param, bin_path = zoo.ncnn_files(name)
            assert param.exists() and bin_path.exists()
    assert zoo.DEFAULT_MODEL in zoo.MODELS


def test_packaged_fine_tuned_weights_load_and_differ_from_pretrained() -> None:
    art, base = zoo.load_model("cunet-art").state_dict(), zoo.load_model("cunet").state_dict()
    assert art.keys() == base.keys()
    assert all(v.dtype == torch.float32 for v in art.values())
    diff = max(float((art[k] - base[k]).abs().max()) for k in art)
    assert 1e-4 < diff < 0.5  # fine-tuned: moved, but not far
