from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from canstyle import weights
from canstyle.errors import CanstyleError
from canstyle.nst.features import CFGS, VGGFeatures, load_features
from canstyle.nst.vgg_weights import vgg16_onnx_path


def test_vgg16_matches_onnx_graph():
    """Our PyTorch VGG16 reproduces the ONNX graph's relu3_1 activations (onnxruntime)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(vgg16_onnx_path()))
    name = "functional_1/block3_conv1_1/Relu:0"
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rgb = np.random.default_rng(0).random((1, 240, 240, 3), dtype=np.float32)
    caffe = rgb[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68], np.float32)
    ref = torch.from_numpy(sess.run([name], {"input": np.ascontiguousarray(caffe)})[0])
    net = load_features("vgg16")
    with torch.no_grad():
        ours = net(torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous(), ["relu3_1"])["relu3_1"]
    assert ours.shape == ref.shape
    rel = (ours - ref).norm() / ref.norm()
    assert rel.item() < 1e-4


def test_caffe_convention_applied_inside():
    net = VGGFeatures("vgg16", "caffe")
    x = torch.rand(1, 3, 4, 4)
    expected = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert torch.allclose(net.normalize(x), expected, atol=1e-4)


def test_unknown_features_is_user_error():
    with pytest.raises(CanstyleError, match="unknown --features"):
        load_features("resnet")


def _fake_torchvision_vgg19(path):
    """A torchvision-layout VGG19 state dict with random weights, named like torch.hub expects."""
    g = torch.Generator().manual_seed(0)
    sd, idx, in_ch = {}, 0, 3
    for v in CFGS["vgg19"]:
        if v == 0:
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, in_ch, 3, 3, generator=g) * 0.01
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        idx, in_ch = idx + 2, v
    tmp = path / "tmp.pth"
    torch.save(sd, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = path / f"vgg19-{digest[:8]}.pth"
    tmp.rename(final)
    return final, sd


def test_vgg19_download_path_and_auto(isolated_home, monkeypatch):
    """The real torch.hub download path, fed from a local file:// URL."""
    src, sd = _fake_torchvision_vgg19(isolated_home)
    monkeypatch.setenv("CANSTYLE_VGG19_URL", src.as_uri())
    net = load_features("vgg19")
    assert net.arch == "vgg19" and net.convention == "torch"
    assert torch.equal(net.convs["conv5_4"].weight, sd["features.34.weight"])
    assert (isolated_home / "torch" / "hub" / "checkpoints" / src.name).exists()
    assert weights.is_cached("vgg19")
    assert load_features("auto").arch == "vgg19"  # auto prefers VGG19 once it is on disk


def test_vgg19_bad_hash_is_refused(isolated_home, monkeypatch):
    src, _ = _fake_torchvision_vgg19(isolated_home)
    bad = src.with_name("vgg19-00000000.pth")
    src.rename(bad)
    monkeypatch.setenv("CANSTYLE_VGG19_URL", bad.as_uri())
    with pytest.raises(CanstyleError, match="VGG19 weights"):
        load_features("vgg19")
    assert load_features("auto").arch == "vgg16"


def test_corrupt_cache_is_reconverted(isolated_home):
    load_features("vgg16")
    path = weights.cached_path("vgg16")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    net = load_features("vgg16")
    assert weights.sha256_file(path) == path.with_suffix(".sha256").read_text().strip()
    assert torch.isfinite(net.convs["conv1_1"].weight).all()
