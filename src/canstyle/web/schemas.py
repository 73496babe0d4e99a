"""Request bodies of the studio's JSON API (they also document it in OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canstyle.nst.plan import LOSS_SCALES, QUALITY, StylizeOptions

Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
_NST = StylizeOptions()  # the studio's defaults are the library's, written once there


class StyleChoice(BaseModel):
    """The painting to paint with: a CAN painting (model + seed) or an uploaded painting."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: str | None = Field(None, description="CAN model id from GET /api/models", examples=["default"])
    seed: Seed | None = Field(None, description="art seed of the CAN painting")
    upload: str | None = Field(None, description="id of a style painting from POST /api/uploads?kind=style")

    @model_validator(mode="after")
    def _one_source(self) -> StyleChoice:
        if (self.upload is None) == (self.model is None):
            raise ValueError("give either model and seed, or upload")
        if self.model is not None and self.seed is None:
            raise ValueError("a CAN painting needs its seed")
        return self


class JobRequest(BaseModel):
    """One job: paint each photo in the style of one painting."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    photos: list[str] = Field(min_length=1, max_length=8, description="photo ids (uploads or bundled)")
    style: StyleChoice
    size: int = Field(_NST.size, ge=32, le=2048, description="long side of the result in pixels")
    style_strength: float = Field(_NST.style_weight, ge=0, le=1000,
                                  description="style loss weight (content weight is 1)")
    preserve_color: Literal["none", "luminance", "histogram"] = "none"
    loss_scale: Literal[LOSS_SCALES] = Field(  # type: ignore[valid-type]
        _NST.loss_scale, description="pair = weights that mean the same for every photo and painting "
                                     "(try style_strength 5); none = raw losses, as Gatys")
    quality: Literal[tuple(QUALITY)] = Field(  # type: ignore[valid-type]
        _NST.quality, description="evaluation budget of the schedule; iterations/coarse_iterations override it")
    iterations: int | None = Field(None, ge=1, le=2000, description="evaluations at the final size")
    coarse_iterations: int | None = Field(None, ge=0, le=2000,
                                          description="at least this many at the coarsest scale")
    seed: Seed | None = Field(None, description="noise seed (default: random, recorded)")
    preview_every: int = Field(5, ge=1, le=1000, description="send a preview every N iterations")


class GridRequest(BaseModel):
    """Paintings to generate (and cache) from a CAN model, one per seed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: str = Field("default", description="CAN model id from GET /api/models")
    seeds: list[Seed] = Field(min_length=1, max_length=64, examples=[[0, 1, 2, 3]])
