"""VGG layer layouts, shared by the feature network (features.py) and the weight converters
(vgg_weights.py), so that the converters need not import the network module."""

from __future__ import annotations

CFGS: dict[str, list[int]] = {
    "vgg16": [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512],
    "vgg19": [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512],
}  # 0 marks a 2x2 max pool


def conv_names(arch: str) -> list[str]:
    names, block, idx = [], 1, 1
    for v in CFGS[arch]:
        if v == 0:
            block, idx = block + 1, 1
        else:
            names.append(f"conv{block}_{idx}")
            idx += 1
    return names
