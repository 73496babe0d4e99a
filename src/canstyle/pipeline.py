"""The whole system: a CAN invents a painting, SR enlarges it, Gatys paints the photo with it.

``Pipeline`` holds the three stages' parts so repeated calls (the CLI's loop
over photos and art seeds, the web studio) load nothing twice. It follows the
diffusers habit: assemble from parts (or ``from_checkpoint``), then
``pipe(content, generator=...)``.

    pipe = Pipeline.from_checkpoint()       # the embedded default CAN, offline
    out = pipe(load_rgb("me.jpg"), art_seed=7, generator=torch.Generator().manual_seed(0))
    save_image(out.images[0], "me_painted.png")
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from canstyle.errors import CanstyleError
from canstyle.imageops import check_image
from canstyle.nst.plan import StylizeOptions, resolve_options
from canstyle.progress import ProgressCallback
from canstyle.seeds import MAX_SEED

if TYPE_CHECKING:
    from canstyle.can.generate import CanGenerator
    from canstyle.nst.stylize import StyleTransfer
    from canstyle.sr.upscaler import Upscaler

# The SR model for CAN paintings. Not `upscale`'s cunet-art: a CAN's nearest-neighbour
# up-sampling leaves a fine pixel-grid texture, which a plain x2 model sharpens into mosaic tiles
# and style transfer then copies into the photo. The JPEG-denoising CUNet reads that texture as
# noise and paints smooth brush shapes instead (compared side by side in docs/pipeline.md).
CAN_SR_MODEL = "cunet-denoise2"


@dataclass
class Artwork:
    """One CAN painting: the raw generator output and the upscaled copy used as the style."""

    seed: int
    art: torch.Tensor  # 1x3xSxS in [0, 1], the generator's native size
    style: torch.Tensor  # 1x3xHxH in [0, 1], after super-resolution
    sr_factor: int  # product of the x2 SR passes (1 = none)


@dataclass
class PipelineOutput:
    images: list[torch.Tensor]  # one 1x3xhxw result per content image
    artwork: Artwork
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _fork(generator: torch.Generator | None) -> torch.Generator | None:
    """A copy of ``generator`` at its current state (drawing from it leaves the original alone)."""
    if generator is None:
        return None
    fork = torch.Generator()
    fork.set_state(generator.get_state())
    return fork


def sr_passes(native: int, target: int) -> int:
    """How many x2 passes bring ``native`` pixels to at least ``target``."""
    return max(0, math.ceil(math.log2(target / native))) if target > native else 0


class Pipeline:
    """CAN -> super-resolution -> Gatys style transfer, assembled from three loaded parts.

    The parts are independent components: ``Pipeline(generator=..., upscaler=..., engine=...)``
    takes them as built, ``from_checkpoint`` loads all three, and ``with_generator`` swaps the
    CAN while sharing the (large) VGG and SR models, as the web studio does for every CAN.
    """

    def __init__(self, *, generator: CanGenerator, upscaler: Upscaler, engine: StyleTransfer) -> None:
        for name, part in (("generator", generator), ("upscaler", upscaler), ("engine", engine)):
            if not callable(part):  # None would fail only at the first call, far from the mistake
                raise TypeError(f"Pipeline needs a {name}, got {part!r} (Pipeline.from_checkpoint() loads all three)")
        self.generator, self.upscaler, self.engine = generator, upscaler, engine

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        features: str = "auto",
        sr_model: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        pooling: str = "max",
        tile: int = 256,
        art_size: int | None = None,
    ) -> Pipeline:
        """Load the three parts: a CAN (None = the embedded default), SR and the VGG engine."""
        from canstyle.can.generate import CanGenerator
        from canstyle.device import resolve_device
        from canstyle.nst.stylize import StyleTransfer
        from canstyle.sr.upscaler import Upscaler

        dev = resolve_device(device)
        # The generator is tiny; it runs in fp32, so on CPU an art seed always gives the same painting.
        generator = CanGenerator.load(checkpoint, dev)
        if art_size is not None and art_size != generator.size:
            raise CanstyleError(
                f"{generator.source} is a preset-{generator.config.preset} CAN ({generator.size}x"
                f"{generator.size} paintings), but --art-size {art_size} was asked; "
                "drop --art-size or use a matching checkpoint"
            )
        upscaler = Upscaler(sr_model or CAN_SR_MODEL, str(dev), precision, tile=tile)
        engine = StyleTransfer(features, str(dev), precision, pooling=pooling)
        return cls(generator=generator, upscaler=upscaler, engine=engine)

    def with_generator(self, generator: CanGenerator) -> Pipeline:
        """The same SR and VGG models with another CAN: nothing large is loaded again."""
        return type(self)(generator=generator, upscaler=self.upscaler, engine=self.engine)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def checkpoint(self) -> Path:
        return self.generator.source

    # -- stages ----------------------------------------------------------
    def paint(self, art_seed: int, style_size: int = 512, truncation: float | None = None,
              callback: ProgressCallback | None = None) -> Artwork:
        """Generate the painting for ``art_seed`` and enlarge it to ``style_size`` pixels."""
        from canstyle.imageops import resize_to

        if not 0 <= art_seed <= MAX_SEED:
            raise CanstyleError(f"art seeds must be between 0 and {MAX_SEED}, got {art_seed}")
        check_style_size(style_size)
        art = self.generator([art_seed], truncation, callback=callback)
        n = sr_passes(art.shape[-1], style_size)
        style = self.upscaler(art, 2**n, callback) if n else art
        # SR works in x2 steps and overshoots; land exactly on the asked size.
        style = resize_to(style, (style_size, style_size))
        return Artwork(art_seed, art, style, 2**n)

    def __call__(
        self,
        content: torch.Tensor | list[torch.Tensor],
        *,
        art_seed: int | None = None,
        artwork: Artwork | None = None,
        generator: torch.Generator | None = None,
        options: StylizeOptions | None = None,
        style_size: int | None = None,
        truncation: float | None = None,
        callback: ProgressCallback | None = None,
        preview_every: int = 0,
        **overrides: Any,
    ) -> PipelineOutput:
        """Paint each content image (1x3xHxW in [0, 1]) in the style of one CAN painting.

        ``art_seed`` picks the painting; without it one is derived from ``generator``
        (a CPU ``torch.Generator``). Every content image starts from the Gaussian noise
        of the same generator state, so a result depends only on (painting, photo,
        generator seed), not on the order or the number of photos, and passing the
        returned ``artwork.seed`` as ``art_seed`` reproduces a call. Pass ``artwork`` to
        reuse a painting. ``options``/``overrides`` are ``StylizeOptions``.
        """
        opts = resolve_options(options, overrides, self.engine.pooling, "Pipeline")
        if generator is not None and generator.device.type != "cpu":
            raise CanstyleError("generator must be a CPU torch.Generator: noise is drawn on the CPU "
                                "so that a seed gives the same start on every device")
        contents = [content] if isinstance(content, torch.Tensor) else list(content)
        if not contents:
            raise CanstyleError("at least one content image is needed")
        if artwork is not None and art_seed is not None:
            raise CanstyleError("give art_seed or artwork, not both (artwork already holds its seed)")
        for i, c in enumerate(contents):  # before the painting is made, not after
            check_image(c, f"content {i + 1}")
        if style_size is not None:
            check_style_size(style_size)
        timings: dict[str, float] = {}
        if artwork is None:
            if art_seed is None:
                art_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=_fork(generator)))
            t0 = time.perf_counter()
            artwork = self.paint(art_seed, style_size or opts.size, truncation, callback)
            timings["paint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = [
            self.engine(c, artwork.style, opts, generator=_fork(generator), callback=callback,
                        preview_every=preview_every)
            for c in contents
        ]
        timings["stylize"] = time.perf_counter() - t0
        return PipelineOutput(images, artwork, timings)

    # -- provenance ------------------------------------------------------
    def weights_info(self) -> dict[str, dict[str, str]]:
        """Path and sha256 of every weight file used, for run.json."""
        from canstyle import weights
        from canstyle.sr.zoo import is_weights_file, weight_name

        sr_model = self.upscaler.sr_model
        sr_file = Path(sr_model) if is_weights_file(sr_model) else weights.cached_path(weight_name(sr_model))
        files = {"can": self.checkpoint, "sr": sr_file,
                 "features": weights.cached_path(self.engine.features)}
        return {k: {"path": str(p), "sha256": weights.recorded_sha256(p)} for k, p in files.items()}

    def describe(self) -> dict[str, Any]:
        """The models in use, in JSON-able form."""
        return {
            "checkpoint": str(self.checkpoint), "preset": self.generator.config.preset,
            "art_size": self.generator.size, "classes": self.generator.classes,
            "sr_model": self.upscaler.sr_model,
            "features": self.engine.features, "device": str(self.device),
            "precision": str(self.engine.dtype).replace("torch.", ""),
        }


def check_style_size(style_size: int) -> None:
    """The painting's size for style transfer, within the bounds ``--size`` has (SR beyond
    8192 px would run for hours and need tens of GB)."""
    from canstyle.nst.plan import MAX_SIDE, MIN_SIDE

    if isinstance(style_size, bool) or not isinstance(style_size, numbers.Integral) or not (
            MIN_SIDE <= style_size <= MAX_SIDE):
        raise CanstyleError(f"style_size must be an int between {MIN_SIDE} and {MAX_SIDE}, got {style_size!r}")
