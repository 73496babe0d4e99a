"""Gatys style transfer: the optimiser loop, multi-scale, colour options.

``StyleTransfer`` holds a feature network so it can be reused across calls (the
web studio and the pipeline keep one). ``stylize`` is the one-shot function.
The CLI's flags are derived from ``StylizeOptions``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import torch

from canstyle.device import autocast, resolve_device, resolve_precision
from canstyle.errors import CanstyleError
from canstyle.nst import color
from canstyle.nst.features import CONTENT_LAYERS, STYLE_LAYERS, load_features
from canstyle.nst.losses import blend_grams, content_loss, gram, resize_to, style_loss, tv_loss
from canstyle.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

MIN_SIDE = 32  # below this VGG's conv5 sees fewer than 2x2 positions
NOISE_STD = 0.25  # x0 = 0.5 + NOISE_STD * N(0, 1), in [0, 1] image units


def _opt(default, help: str, choices=None, flag=None):  # type: ignore[no-untyped-def]
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if flag is not None:
        meta["flag"] = flag
    return field(default=default, metadata=meta)


# The default schedule, in loss-and-gradient evaluations. Every scale but the coarsest starts
# from the upsampled result of the one below, and a scale of long side L gets about
# REF_EVALS * REF_SIDE / L evaluations: each halving of the side doubles the evaluations and
# halves what the scale costs, so the cheap scales do most of the work. The coarsest scale starts
# from noise and gets at least FIRST_EVALS, which is what settles the composition.
REF_SIDE, REF_EVALS = 512, 14
FIRST_EVALS = 150
MIN_EVALS = 8
QUALITY = {"draft": 0.5, "standard": 1.0, "fine": 2.0}  # multiplies every budget
PLATEAU_WINDOW = 10  # evaluations between two plateau checks


@dataclass
class StylizeOptions:
    """Every knob of a stylisation; the CLI flags are generated from these fields."""

    size: int = _opt(512, "long side of the result in pixels")
    init: str = _opt("noise", "start image: noise (Gatys), content, or a path to an image")
    quality: str = _opt("standard", "evaluation budget of the schedule: draft = half, fine = double",
                        choices=tuple(QUALITY))
    iterations: int | None = _opt(None, f"evaluations at the final size (default: {REF_EVALS} at "
                                        f"{REF_SIDE} px, more at smaller sizes, x quality); each coarser "
                                        "scale gets twice the one above")
    coarse_iterations: int | None = _opt(None, f"at least this many at the coarsest scale, which starts "
                                               f"from noise (default: {FIRST_EVALS} x quality)")
    min_scale: int = _opt(64, "long side of the coarsest scale; equal to --size for one scale")
    plateau: float = _opt(3e-3, "end a scale early when its loss fell by less than this fraction over "
                                f"the last {PLATEAU_WINDOW} evaluations (0 = use the whole budget)")
    optimizer: str = _opt("lbfgs", "optimiser", choices=("lbfgs", "adam"))
    lr: float = _opt(0.02, "learning rate (Adam only; L-BFGS uses 1)")
    content_weight: float = _opt(1.0, "weight of the content loss (relu4_2)")
    style_weight: float = _opt(3.0, "weight of the style loss (relu1_1..relu5_1)")
    tv_weight: float = _opt(0.0, "weight of the total-variation smoothness loss")
    # Departure from Gatys et al.: the noise start's pixel grain is invisible to VGG at the
    # 64 px scale (pooling hides it), so without this it survives into every later scale.
    start_tv_weight: float = _opt(10.0, "total-variation weight at the coarsest scale only, which "
                                        "starts from noise (later scales use --tv-weight)")
    style_weights: list[float] | None = _opt(None, "blend weights for several styles, e.g. 1,2 (default: equal)")
    style_scale: float = _opt(1.0, "size at which styles are analysed, relative to --size")
    preserve_color: str = _opt(
        "none", "keep the photo's colours", choices=("none", "luminance", "histogram")
    )
    # Departure from Gatys et al., who preferred average pooling: max pooling (VGG's own) gave
    # crisper strokes with these weights, and average pooling stays one flag away.
    pooling: str = _opt("max", "VGG pooling (Gatys et al. preferred avg)", choices=("max", "avg"))

    def validate(self) -> None:
        self._check_numbers()
        if self.size < MIN_SIDE:
            raise CanstyleError(f"--size must be at least {MIN_SIDE}, got {self.size}")
        if (self.iterations is not None and self.iterations < 1) or (
                self.coarse_iterations is not None and self.coarse_iterations < 0):
            raise CanstyleError("--iterations must be >= 1 and --coarse-iterations >= 0")
        if self.min_scale < MIN_SIDE:
            raise CanstyleError(f"--min-scale must be at least {MIN_SIDE}")
        if self.quality not in QUALITY:
            raise CanstyleError(f"--quality must be one of {', '.join(QUALITY)}")
        if not self.style_scale > 0:
            raise CanstyleError("--style-scale must be positive")
        if not 0 <= self.plateau < 1:
            raise CanstyleError("--plateau must be in [0, 1)")
        if min(self.content_weight, self.style_weight, self.tv_weight, self.start_tv_weight) < 0:
            raise CanstyleError("loss weights must not be negative")
        if self.style_weights is not None and (
            any(w < 0 for w in self.style_weights) or sum(self.style_weights) <= 0
        ):
            raise CanstyleError("--style-weights must be non-negative with a positive sum")

    def _check_numbers(self) -> None:
        """Every float option is finite (argparse's float() takes "nan" and "inf") and lr > 0."""
        names = ("lr", "content_weight", "style_weight", "tv_weight", "start_tv_weight", "style_scale",
                 "plateau")
        values = [(n, getattr(self, n)) for n in names] + [("style_weights", w) for w in self.style_weights or ()]
        for name, value in values:
            if not math.isfinite(value):
                raise CanstyleError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not self.lr > 0:  # Adam rejects lr <= 0 only after the models are loaded
            raise CanstyleError(f"--lr must be positive, got {self.lr}")

    def scales(self) -> list[int]:
        """Long sides from coarse to fine: ``min_scale``, then doublings that end at ``size``."""
        sizes = [self.size]
        while sizes[0] // 2 >= self.min_scale and self.min_scale < self.size:
            sizes.insert(0, sizes[0] // 2)
        if sizes[0] > self.min_scale and self.min_scale < self.size:
            sizes.insert(0, self.min_scale)
        return sizes


class Stage(NamedTuple):
    long: int  # long side of this scale
    hw: tuple[int, int]
    iterations: int  # evaluation budget (a plateau may end the scale sooner)


def fit_size(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    h, w = hw
    scale = long_side / max(h, w)
    out = (max(round(h * scale), 1), max(round(w * scale), 1))
    if min(out) < MIN_SIDE:
        raise CanstyleError(
            f"image is too thin: {w}x{h} becomes {out[1]}x{out[0]} at size {long_side}; "
            f"both sides must be at least {MIN_SIDE} px"
        )
    return out


def style_size(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Analysis size of a style image: long side ``long_side``, but never thinner than VGG needs."""
    h, w = hw
    scale = max(long_side / max(h, w), MIN_SIDE / min(h, w))
    if scale * max(h, w) > 8 * max(long_side, MIN_SIDE):
        raise CanstyleError(f"style image is too thin to analyse: {w}x{h}")
    return (max(round(h * scale), MIN_SIDE), max(round(w * scale), MIN_SIDE))


def scale_plan(opts: StylizeOptions, final_hw: tuple[int, int]) -> list[Stage]:
    """The schedule: one ``Stage`` per scale, coarse to fine. The CLI, ``Pipeline``, the web
    studio and the recorded parameters all take the plan from here.

    Coarse scales too thin for VGG are dropped. The final scale gets ``iterations``, each
    coarser scale ``iterations * size / long`` (its evaluations cost about long^2), and the
    coarsest, which starts from noise, at least ``coarse_iterations``.
    """
    q = QUALITY[opts.quality]
    final = opts.iterations
    if final is None:
        final = max(1, round(max(MIN_EVALS, min(FIRST_EVALS, round(REF_EVALS * REF_SIDE / opts.size))) * q))
    first = opts.coarse_iterations if opts.coarse_iterations is not None else FIRST_EVALS * q
    sides = []
    for long in opts.scales()[:-1]:
        s = long / max(final_hw)
        hw = (round(final_hw[0] * s), round(final_hw[1] * s))
        if min(hw) >= MIN_SIDE:
            sides.append((long, hw))
    sides.append((opts.size, final_hw))
    plan = [Stage(long, hw, max(1, round(final * opts.size / long))) for long, hw in sides]
    if opts.iterations is None or len(plan) > 1:  # an explicit one-scale budget is kept as given
        plan[0] = plan[0]._replace(iterations=max(plan[0].iterations, round(first)))
    return plan


def plan_record(opts: StylizeOptions, content_hw: tuple[int, int]) -> list[list[int]]:
    """The plan for a photo of ``content_hw`` as recorded with outputs: [[h, w, evaluations], ...]."""
    return [[*st.hw, st.iterations] for st in scale_plan(opts, fit_size(content_hw, opts.size))]


def plan_cost(plan: list[Stage]) -> float:
    """Nominal cost in evaluations at the final size (pixels relative to the final scale)."""
    h, w = plan[-1].hw
    return sum(st.iterations * st.hw[0] * st.hw[1] / (h * w) for st in plan)


def preview_steps(opts: StylizeOptions, final_hw: tuple[int, int], every: int) -> list[int]:
    """The progress steps that carry a preview image with ``preview_every=every``."""
    steps, done = [], 0
    for _, _, n in scale_plan(opts, final_hw):
        steps += [done + k for k in range(every, n + 1, every)]
        done += n
    return steps


@dataclass
class _Targets:
    content: dict[str, torch.Tensor]
    grams: dict[str, torch.Tensor]


class StyleTransfer:
    """A reusable Gatys style-transfer engine bound to one feature network and device."""

    def __init__(
        self, features: str = "auto", device: str = "auto", precision: str = "auto", pooling: str = "max"
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
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
        hw: tuple[int, int], style_long: int, dtype: torch.dtype | None = None,
    ) -> _Targets:
        """Content features at ``hw`` and blended style Grams with styles at ``style_long``."""
        c = self._feats(resize_to(content, hw), CONTENT_LAYERS, dtype)
        grams = []
        for s in styles:
            fs = self._feats(resize_to(s, style_size(tuple(s.shape[-2:]), style_long)), STYLE_LAYERS, dtype)
            grams.append({k: gram(v) for k, v in fs.items()})
        return _Targets({k: v.float() for k, v in c.items()}, blend_grams(grams, weights))

    def losses(
        self, x: torch.Tensor, t: _Targets, opts: StylizeOptions, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        f = self._feats(x, dtype=dtype)
        lc = content_loss(f, t.content)
        ls = style_loss(f, t.grams)
        ltv = tv_loss(x)
        total = opts.content_weight * lc + opts.style_weight * ls + opts.tv_weight * ltv
        return total, {"content": lc.item(), "style": ls.item(), "tv": ltv.item()}

    def evaluate(
        self, x: torch.Tensor, content: torch.Tensor, styles: list[torch.Tensor], opts: StylizeOptions
    ) -> dict[str, float]:
        """The full-precision loss of ``x`` against targets at its own size (for benchmarks).

        fp32 is passed down rather than set on the engine, so a stylisation running in
        another thread (the web studio) keeps its own precision.
        """
        w = _style_weights(opts, len(styles))
        long = max(x.shape[-2:])
        t = self.targets(content, styles, w, tuple(x.shape[-2:]), round(long * opts.style_scale), torch.float32)
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
        **overrides: object,
    ) -> torch.Tensor:
        """Stylise ``content`` (1x3xHxW in [0, 1]) with ``styles``; returns 1x3xhxw in [0, 1] on CPU."""
        opts = StylizeOptions(**{**asdict(options or StylizeOptions()), **overrides})
        opts.validate()
        styles = [styles] if isinstance(styles, torch.Tensor) else list(styles)
        if not styles:
            raise CanstyleError("at least one style image is needed")
        weights = _style_weights(opts, len(styles))
        content = content.float().cpu()
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
            t = self.targets(content, styles, weights, hw, round(long * opts.style_scale))

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


def _style_weights(opts: StylizeOptions, n: int) -> list[float]:
    if opts.style_weights is None:
        return [1.0] * n
    if len(opts.style_weights) != n:
        raise CanstyleError(f"--style-weights has {len(opts.style_weights)} values for {n} styles")
    return list(opts.style_weights)


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
    **overrides: object,
) -> torch.Tensor:
    """One-shot style transfer. See ``StylizeOptions`` for the knobs."""
    pooling = str(overrides.get("pooling", (options or StylizeOptions()).pooling))
    engine = StyleTransfer(features, device, precision, pooling=pooling)
    return engine(content, styles, options, generator=generator, callback=callback, **overrides)
