"""Style-transfer options and the schedule: ``StylizeOptions``, image and style sizes, and the
one ``scale_plan`` that the CLI, ``Pipeline``, the web studio and recorded parameters all use.

Kept apart from the engine (``stylize.py``) so that the studio and the CLI can read options and
plans without the optimiser loop.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from canstyle.errors import CanstyleError

MIN_SIDE = 32  # below this VGG's conv5 sees fewer than 2x2 positions
# A result of 8192 px already needs tens of GB for VGG's activations; beyond it a size is a typo.
MAX_SIDE = 8192
# Past this a --style-scale is a typo (100 for 1.00): a 64 px result whose painting was analysed at
# 6400 px took 13.8 GB and a minute, and strokes 8x the result's scale no longer read as strokes.
MAX_STYLE_SCALE = 8.0


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
# The default style weight, on raw losses (--loss-scale none). With --loss-scale pair the weights
# are in units of the pair's own losses, and 5 was the harness's best (docs/benchmarks.md).
STYLE_WEIGHT = 3.0
FIRST_EVALS = 150
MIN_EVALS = 8
QUALITY = {"draft": 0.5, "standard": 1.0, "fine": 2.0}  # multiplies every budget
LOSS_SCALES = ("pair", "none")
PLATEAU_WINDOW = 10  # evaluations between two plateau checks


_INTS = ("size", "iterations", "coarse_iterations", "min_scale")
_FLOATS = ("plateau", "lr", "content_weight", "style_weight", "tv_weight", "start_tv_weight", "style_scale")


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
    style_weight: float = _opt(STYLE_WEIGHT, "weight of the style loss (relu1_1..relu5_1)")
    # Departure from Gatys et al., whose fixed weights on raw losses suit one pair and not the
    # next: a high-contrast painting's style loss against a photo is a third of a hazy one's, so
    # one photo kept too little of itself and another too little of the painting (docs/benchmarks.md).
    loss_scale: str = _opt("none", "pair = divide the content loss by the painting's own content "
                                   "loss against the photo and the style loss by the photo's own "
                                   "style loss, so the weights mean the same for every pair; "
                                   "none = raw losses, as Gatys", choices=LOSS_SCALES)
    tv_weight: float = _opt(0.0, "weight of the total-variation smoothness loss")
    # Departure from Gatys et al.: the noise start's pixel grain is invisible to VGG at the
    # 64 px scale (pooling hides it), so without this it survives into every later scale.
    start_tv_weight: float = _opt(10.0, "total-variation weight at the coarsest scale only, which "
                                        "starts from noise (later scales use --tv-weight)")
    style_weights: list[float] | None = _opt(None, "blend weights for several styles, e.g. 1,2 (default: equal)")
    style_scale: float = _opt(1.0, "size at which styles are analysed, relative to --size (at most "
                                   f"{MAX_STYLE_SCALE:g}, and --size x this at most {MAX_SIDE} px)")
    preserve_color: str = _opt(
        "none", "keep the photo's colours", choices=("none", "luminance", "histogram")
    )
    # Departure from Gatys et al., who preferred average pooling: max pooling (VGG's own) gave
    # crisper strokes with these weights, and average pooling stays one flag away.
    pooling: str = _opt("max", "VGG pooling (Gatys et al. preferred avg)", choices=("max", "avg"))

    def with_overrides(self, **overrides: Any) -> StylizeOptions:
        """A validated copy with some fields replaced (how every stylising call takes options)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"unknown StylizeOptions field(s): {', '.join(unknown)}")
        opts = replace(self, **overrides)
        opts.validate()
        return opts

    def validate(self) -> None:
        self._check_types()
        self._check_numbers()
        if not MIN_SIDE <= self.size <= MAX_SIDE:
            raise CanstyleError(f"--size must be between {MIN_SIDE} and {MAX_SIDE}, got {self.size}")
        if (self.iterations is not None and self.iterations < 1) or (
                self.coarse_iterations is not None and self.coarse_iterations < 0):
            raise CanstyleError("--iterations must be >= 1 and --coarse-iterations >= 0")
        if self.min_scale < MIN_SIDE:
            raise CanstyleError(f"--min-scale must be at least {MIN_SIDE}")
        if not 0 < self.style_scale <= MAX_STYLE_SCALE:
            raise CanstyleError(f"--style-scale must be above 0 and at most {MAX_STYLE_SCALE:g}, got {self.style_scale:g}")
        if self.size * self.style_scale > MAX_SIDE:
            raise CanstyleError(f"--size {self.size} x --style-scale {self.style_scale:g} would analyse the painting "
                                f"at more than {MAX_SIDE} px")
        if not 0 <= self.plateau < 1:
            raise CanstyleError("--plateau must be in [0, 1)")
        if min(self.content_weight, self.style_weight, self.tv_weight, self.start_tv_weight) < 0:
            raise CanstyleError("loss weights must not be negative")
        if self.style_weights is not None and (
            any(w < 0 for w in self.style_weights) or sum(self.style_weights) <= 0
        ):
            raise CanstyleError("--style-weights must be non-negative with a positive sum")

    def weights_for(self, n_styles: int) -> list[float]:
        """The blend weight of each of ``n_styles`` styles (equal unless --style-weights)."""
        if self.style_weights is None:
            return [1.0] * n_styles
        if len(self.style_weights) != n_styles:
            raise CanstyleError(f"--style-weights has {len(self.style_weights)} values for {n_styles} style(s)")
        return list(self.style_weights)

    def _check_types(self) -> None:
        """Python callers get what the CLI's parser gives: ints, numbers and choices, each named
        (size="512" or pooling="min" would otherwise fail deep inside, or be silently ignored)."""
        for f in fields(self):
            v, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            choices = f.metadata.get("choices")
            if choices is not None and v not in choices:
                raise CanstyleError(f"{flag} must be one of {', '.join(choices)}, got {v!r}")
            if f.name in _INTS and v is not None:
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    raise CanstyleError(f"{flag} must be an integer, got {v!r}")
                setattr(self, f.name, int(v))  # numpy integers become plain ones (JSON, recorded params)
            if f.name in _FLOATS:
                if isinstance(v, bool) or not isinstance(v, numbers.Real):
                    raise CanstyleError(f"{flag} must be a number, got {v!r}")
                if not isinstance(v, (int, float)):
                    setattr(self, f.name, float(v))
        if not isinstance(self.init, (str, os.PathLike)):
            raise CanstyleError(f"--init must be noise, content or a path, got {self.init!r}")
        if self.style_weights is not None and not all(
                isinstance(w, numbers.Real) and not isinstance(w, bool) for w in self.style_weights):
            raise CanstyleError(f"--style-weights must be numbers, got {self.style_weights!r}")

    def _check_numbers(self) -> None:
        """Every float option is finite (argparse's float() takes "nan" and "inf") and lr > 0."""
        values = [(n, getattr(self, n)) for n in _FLOATS] + [("style_weights", w) for w in self.style_weights or ()]
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


def resolve_options(options: StylizeOptions | None, overrides: dict[str, Any], pooling: str | None = None,
                    who: str = "StyleTransfer") -> StylizeOptions:
    """The validated options of one call: ``options`` (or the defaults) with ``overrides``. With
    ``pooling``, that of a network already built: used unless another was asked for, which is an
    error (silently painting with the other pooling would be worse)."""
    if options is not None and not isinstance(options, StylizeOptions):
        raise TypeError("options must be a StylizeOptions (or pass its fields as keywords, e.g. size=256)")
    opts = (options or StylizeOptions()).with_overrides(**overrides)
    if pooling is not None and opts.pooling != pooling:
        if "pooling" in overrides or (options is not None and options.pooling != StylizeOptions.pooling):
            raise CanstyleError(f"this {who} was built with {pooling} pooling; "
                                f"build another with pooling={opts.pooling!r}")
        opts = replace(opts, pooling=pooling)
    return opts


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
