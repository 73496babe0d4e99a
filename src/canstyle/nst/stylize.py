"""Gatys style transfer: the engine, the optimiser loop, colour options.

Options and the multi-scale schedule live in ``nst/plan.py`` and are re-exported here.

``StyleTransfer`` holds a feature network so it can be reused across calls (the
web studio and the pipeline keep one). ``stylize`` is the one-shot function.
The CLI's flags are derived from ``StylizeOptions``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from canstyle.device import autocast, resolve_device, resolve_precision
from canstyle.errors import CanstyleError
from canstyle.imageops import check_image, resize_to
from canstyle.nst import color
from canstyle.nst.features import CONTENT_LAYERS, STYLE_LAYERS, load_features
from canstyle.nst.losses import blend_grams, content_loss, gram, style_loss, tv_loss
from canstyle.nst.plan import (  # noqa: F401  (re-exported: the options and plan are part of this API)
    FIRST_EVALS,
    MIN_SIDE,
    PLATEAU_WINDOW,
    QUALITY,
    REF_EVALS,
    REF_SIDE,
    Stage,
    StylizeOptions,
    fit_size,
    plan_cost,
    plan_record,
    preview_steps,
    resolve_options,
    scale_plan,
    style_size,
)
from canstyle.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

NOISE_STD = 0.25  # x0 = 0.5 + NOISE_STD * N(0, 1), in [0, 1] image units


@dataclass
class _Targets:
    content: dict[str, torch.Tensor]
    grams: dict[str, torch.Tensor]
    # The pair's own losses at this scale (see StylizeOptions.loss_scale): the painting's content
    # loss against the photo and the photo's style loss against the painting.
    content_scale: float = 1.0
    style_scale: float = 1.0


class StyleTransfer:
    """A reusable Gatys style-transfer engine bound to one feature network and device."""

    def __init__(
        self, features: str = "auto", device: str = "auto", precision: str = "auto", pooling: str = "max"
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.pooling = pooling
        self.net = load_features(features, pooling=pooling).to(self.device)
        if self.device.type == "cpu":
            # oneDNN prefers NHWC for bf16 convolutions on CPU.
            self.net = self.net.to(memory_format=torch.channels_last)
        self.features = self.net.arch
        self._layers = tuple(dict.fromkeys(CONTENT_LAYERS + STYLE_LAYERS))

    # -- feature helpers -------------------------------------------------
    def _feats(self, x: torch.Tensor, layers: tuple[str, ...] | None = None,
               dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        x = x.to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, dtype or self.dtype):
            return self.net(x, layers or self._layers)

    @torch.no_grad()
    def targets(
        self, content: torch.Tensor, styles: list[torch.Tensor], weights: list[float],
        hw: tuple[int, int], style_long: int, dtype: torch.dtype | None = None, pair_scales: bool = False,
    ) -> _Targets:
        """Content features at ``hw`` and blended style Grams with styles at ``style_long``; with
        ``pair_scales`` also the pair's own losses (one more forward pass per image, no backward)."""
        photo = self._feats(resize_to(content, hw), None if pair_scales else CONTENT_LAYERS, dtype)
        c = {k: photo[k].float() for k in CONTENT_LAYERS}
        grams = []
        for s in styles:
            fs = self._feats(resize_to(s, style_size(tuple(s.shape[-2:]), style_long)), STYLE_LAYERS, dtype)
            grams.append({k: gram(v) for k, v in fs.items()})
        blended = blend_grams(grams, weights)
        if not pair_scales:
            return _Targets(c, blended)
        total = float(sum(weights))
        # The paintings squeezed to the photo's frame: how far an unrelated picture is in content.
        c_scale = sum(w / total * float(content_loss(self._feats(resize_to(s, hw), CONTENT_LAYERS, dtype), c))
                      for s, w in zip(styles, weights, strict=True))
        s_scale = float(style_loss(photo, blended))
        return _Targets(c, blended, max(c_scale, 1e-8), max(s_scale, 1e-8))

    def losses(
        self, x: torch.Tensor, t: _Targets, opts: StylizeOptions, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        f = self._feats(x, dtype=dtype)
        lc = content_loss(f, t.content)
        ls = style_loss(f, t.grams)
        ltv = tv_loss(x)
        wc, ws = opts.content_weight, opts.style_weight
        if opts.loss_scale == "pair":
            wc, ws = wc / t.content_scale, ws / t.style_scale
        total = wc * lc + ws * ls + opts.tv_weight * ltv
        return total, {"content": lc.item(), "style": ls.item(), "tv": ltv.item()}

    def evaluate(
        self, x: torch.Tensor, content: torch.Tensor, styles: list[torch.Tensor], opts: StylizeOptions
    ) -> dict[str, float]:
        """The full-precision loss of ``x`` against targets at its own size (for benchmarks).

        fp32 is passed down rather than set on the engine, so a stylisation running in
        another thread (the web studio) keeps its own precision.
        """
        w = opts.weights_for(len(styles))
        long = max(x.shape[-2:])
        t = self.targets(content, styles, w, tuple(x.shape[-2:]), round(long * opts.style_scale), torch.float32,
                         opts.loss_scale == "pair")
        with torch.no_grad():
            total, parts = self.losses(x.to(self.device), t, opts, torch.float32)
        return {"total": float(total), **parts}

    # -- main entry ------------------------------------------------------
    def __call__(
        self,
        content: torch.Tensor,
        styles: torch.Tensor | list[torch.Tensor],
        options: StylizeOptions | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        preview_every: int = 0,
        **overrides: Any,
    ) -> torch.Tensor:
        """Stylise ``content`` (1x3xHxW in [0, 1]) with ``styles``; returns 1x3xhxw in [0, 1] on CPU."""
        opts = resolve_options(options, overrides, self.pooling)
        if not isinstance(styles, (torch.Tensor, list, tuple)):
            raise TypeError(f"styles: expected a 1x3xHxW tensor or a list of them, got {type(styles).__name__}")
        styles = [styles] if isinstance(styles, torch.Tensor) else list(styles)
        if not styles:
            raise CanstyleError("at least one style image is needed")
        weights = opts.weights_for(len(styles))
        content = _rgb(check_image(content, "content")).cpu()
        styles = [_rgb(check_image(s, f"style {i + 1}")).cpu() for i, s in enumerate(styles)]
        orig_content = content
        if opts.preserve_color == "luminance":
            styles = [color.match_luminance(color.rgb_to_yiq(s), color.rgb_to_yiq(content)) for s in styles]
            content = color.luminance(content)
        elif opts.preserve_color == "histogram":
            styles = [color.match_histogram(s, content) for s in styles]
        final_hw = fit_size(tuple(content.shape[-2:]), opts.size)
        x = self._run_scales(content, styles, weights, opts, final_hw, generator, callback, preview_every)
        if opts.preserve_color == "luminance":
            x = color.restore_chroma(x, resize_to(orig_content, final_hw))
        return x

    def _run_scales(self, content, styles, weights, opts, final_hw, generator, callback, preview_every):  # type: ignore[no-untyped-def]
        plan = scale_plan(opts, final_hw)
        total, done = sum(st.iterations for st in plan), 0
        x: torch.Tensor | None = None
        last: dict = {"step": 0, "loss": None, "parts": {}}
        for i, (long, hw, n) in enumerate(plan):
            start = x is None
            x = self._initial(content, opts, hw, generator) if start else resize_to(x, hw)
            if n == 0:
                continue
            stage_opts = opts
            if start and opts.init == "noise":  # see start_tv_weight
                stage_opts = replace(opts, tv_weight=opts.tv_weight + opts.start_tv_weight)
            t = self.targets(content, styles, weights, hw, round(long * opts.style_scale),
                             pair_scales=opts.loss_scale == "pair")

            def report(step: int, loss: float, parts: dict[str, float], img: torch.Tensor,
                       i: int = i, hw: tuple[int, int] = hw, base: int = done) -> None:
                last.update(step=base + step, loss=loss, parts=parts)
                if callback is None:
                    return
                want = preview_every > 0 and (step % preview_every == 0)
                callback(Progress("stylize", base + step, total, i, len(plan), hw, loss, parts,
                                  img.detach().clamp(0, 1).cpu() if want else None))

            x = _optimize(self, x, t, stage_opts, n, report)
            done += n
        assert x is not None
        x = x.clamp(0, 1).cpu()
        if callback is not None and last["step"] < total:  # a plateau ended the last scale early
            callback(Progress("stylize", total, total, len(plan) - 1, len(plan), plan[-1].hw,
                              last["loss"], last["parts"]))
        return x

    def _initial(self, content: torch.Tensor, opts: StylizeOptions, hw: tuple[int, int],
                 generator: torch.Generator | None) -> torch.Tensor:
        if opts.init == "noise":
            # Gaussian noise, as Gatys et al. start from; departure: N(0.5, 0.25) in [0, 1] image
            # units, clamped, where the paper draws white noise in the network's input space.
            # Drawn on CPU so a seed gives the same start on every device.
            return (0.5 + NOISE_STD * torch.randn(1, 3, *hw, generator=generator)).clamp(0, 1)
        if opts.init == "content":
            return resize_to(content, hw)
        from canstyle.imageio import load_rgb

        img = load_rgb(opts.init)
        if opts.preserve_color == "luminance":
            img = color.luminance(img)
        return resize_to(img, hw)


def _optimize(engine: StyleTransfer, x0, t, opts, n, report):  # type: ignore[no-untyped-def]
    """Run at most ``n`` optimiser evaluations from ``x0``; return the best image seen.

    L-BFGS runs in chunks of ``PLATEAU_WINDOW`` evaluations on one optimiser, whose history
    carries over between chunks, so chunking costs no extra evaluation. After each chunk the
    scale ends if the best loss fell by less than ``opts.plateau`` of itself: the budget is
    an upper bound, and a converged coarse scale hands its evaluations back.
    """
    x = x0.detach().clone().to(engine.device).requires_grad_(True)
    state = {"step": 0, "best": math.inf, "best_x": x0}

    def closure() -> torch.Tensor:
        optim.zero_grad(set_to_none=True)
        loss, parts = engine.losses(x, t, opts)
        loss.backward()
        state["step"] += 1
        value = loss.detach().item()
        if value < state["best"] and math.isfinite(value):
            state["best"], state["best_x"] = value, x.detach().clone()
        report(state["step"], value, parts, x)
        return loss

    if opts.optimizer == "lbfgs":
        # Tolerances off: the budget and the plateau rule decide when to stop.
        optim = torch.optim.LBFGS([x], lr=1.0, history_size=50, tolerance_grad=0.0, tolerance_change=0.0)
        while state["step"] < n:
            before = state["best"]
            chunk = min(PLATEAU_WINDOW, n - state["step"])
            # max_eval = chunk + 1: the chunk's last step is taken but left for the next chunk's
            # first evaluation, so no point is evaluated twice.
            optim.param_groups[0].update(max_iter=chunk, max_eval=chunk + 1)
            optim.step(closure)
            if opts.plateau > 0 and math.isfinite(before) and before - state["best"] < opts.plateau * before:
                break
    else:
        optim = torch.optim.Adam([x], lr=opts.lr)
        for _ in range(n):
            optim.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)
    return state["best_x"].detach().clamp(0, 1)


def stylize(
    content: torch.Tensor,
    styles: torch.Tensor | list[torch.Tensor],
    options: StylizeOptions | None = None,
    *,
    features: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    preview_every: int = 0,
    **overrides: Any,
) -> torch.Tensor:
    """One-shot style transfer. See ``StylizeOptions`` for the knobs; the arguments are
    ``StyleTransfer``'s and its ``__call__``'s.

    Like every one-shot function it keeps the model of its last call (``canstyle.oneshot``).
    """
    from canstyle.oneshot import reuse

    opts = resolve_options(options, overrides)
    engine = reuse("stylize", (features, device, precision, opts.pooling),
                   lambda: StyleTransfer(features, device, precision, pooling=opts.pooling))
    return engine(content, styles, opts, generator=generator, callback=callback, preview_every=preview_every)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """A grey 1-channel image as RGB (VGG and the colour options need three)."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
