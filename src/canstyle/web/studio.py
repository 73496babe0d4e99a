"""The canstyle work behind the web studio: CAN models, painting grids, request checks, job runs.

Everything the browser names is an id we generated (an upload's hash, a job id, a
model listed from the models dir); no file name from a request ever becomes a path.
Only exported ``*.safetensors`` generators that load completely are listed as models,
so nothing from the web can make the server unpickle a file or run code, and a damaged
export is never offered. Messages that reach the browser name files, never server paths.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from canstyle.errors import CanstyleError
from canstyle.imageio import load_image, save_image, tensor_to_pil
from canstyle.progress import Progress
from canstyle.web.uploads import THUMB, Uploads, UploadTooLarge

log = logging.getLogger("canstyle.web")

__all__ = ["Studio", "UploadTooLarge", "stylize_options", "jpeg_bytes"]

MODEL_ID = re.compile(r"default|[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.safetensors")
PREVIEW = 384  # long side of live previews: enough to judge, small enough to send often
# An absolute POSIX path not preceded by a scheme's "//": replaced by its last part.
ABS_PATH = re.compile(r"(?<![\w.:/~])/(?:[^\s'\"/:,()]+/)+([^\s'\"/:,()]+)")


def jpeg_bytes(img: torch.Tensor, long_side: int, quality: int = 85) -> bytes:
    im = tensor_to_pil(img)
    im.thumbnail((long_side, long_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def shrunk_hw(h: int, w: int, long_side: int) -> tuple[int, int]:
    """The size ``shrink`` gives an h x w image (checked at submit, used at run time)."""
    if max(h, w) <= long_side:
        return h, w
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def shrink(img: torch.Tensor, long_side: int) -> torch.Tensor:
    """Downscale so the long side is at most ``long_side``; bounds memory for huge photos."""
    from canstyle.imageops import resize_to

    h, w = img.shape[-2:]
    hw = shrunk_hw(h, w, long_side)
    return img if hw == (h, w) else resize_to(img, hw)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None  # JSON has no NaN or inf


class Studio:
    """Uploads, models, paintings and the job runner, all inside one output folder."""

    def __init__(self, output: Path, models_dir: Path | None = None, *, features: str = "auto",
                 device: str = "auto", precision: str = "auto", max_pixels: int = 40_000_000) -> None:
        from canstyle.assets import DEMO_DIR, DEMO_PHOTOS

        self.output = Path(output)
        self.paintings = self.output / "paintings"
        self.jobs = self.output / "jobs"
        for d in (self.paintings, self.jobs):
            d.mkdir(parents=True, exist_ok=True)
        self.models_dir = Path(models_dir) if models_dir is not None else self.output / "models"
        self.features, self.device, self.precision = features, device, precision
        self.uploads = Uploads(self.output / "uploads", {f"demo-{Path(n).stem}": DEMO_DIR / n for n in DEMO_PHOTOS},
                               max_pixels)
        self._gen_lock = threading.Lock()
        self._checked: dict[tuple[str, int, int], dict[str, Any] | None] = {}  # file state -> entry
        self._generators: OrderedDict[str, Any] = OrderedDict()  # CPU copies, for painting grids
        # Used by the worker thread only: one SR upscaler and one VGG engine for every job, and on
        # a GPU device copies of the few generators recently stylised with.
        self._upscaler: Any = None
        self._engine: Any = None
        self._cans: OrderedDict[str, Any] = OrderedDict()

    def scrub(self, message: str) -> str:
        """A message fit for the browser: server folders and absolute paths cut to file names."""
        for folder in {self.models_dir, self.models_dir.resolve(), self.output, self.output.resolve()}:
            message = message.replace(f"{folder}/", "")
        return ABS_PATH.sub(r"\1", message)

    # -- CAN models and painting grids -------------------------------------
    def _model_entry(self, model_id: str, path: Path) -> dict[str, Any] | None:
        """The model's listing, or None if it is not a complete, loadable generator export.

        The full load (every tensor against its config) runs once per file version.
        """
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)  # a replaced file is checked again
        if key not in self._checked:
            self._checked[key] = self._load_entry(model_id, path)
        entry = self._checked[key]
        return None if entry is None else {**entry, "id": model_id}

    def _load_entry(self, model_id: str, path: Path) -> dict[str, Any] | None:
        from canstyle.can.generate import EXPORT_FORMAT, CanGenerator
        from canstyle.weights import read_metadata, sha256_file

        try:
            meta = read_metadata(path)
            if meta.get("format") != EXPORT_FORMAT:
                return None
            cfg = json.loads(meta["config"])
            classes = json.loads(meta.get("classes", "[]"))
            generator = CanGenerator.load(path, "cpu")
            sha = sha256_file(path)
        except (CanstyleError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            log.warning("skipping model %s: %s", path.name, e)
            return None
        with self._gen_lock:
            self._remember_generator(sha, generator)
        return {"id": model_id, "name": "default CAN" if model_id == "default" else path.stem,
                "preset": cfg.get("preset"), "art_size": cfg.get("preset"), "classes": classes,
                "step": meta.get("step"), "sha256": sha, "path": path}

    def _remember_generator(self, sha: str, generator: Any) -> None:
        self._generators[sha] = generator
        self._generators.move_to_end(sha)
        while len(self._generators) > 4:
            self._generators.popitem(last=False)

    def models(self) -> list[dict[str, Any]]:
        """The embedded default CAN, then every exported generator in the models dir."""
        from canstyle.assets import DEFAULT_CAN

        found = [("default", DEFAULT_CAN)] if DEFAULT_CAN.is_file() else []
        if self.models_dir.is_dir():
            found += [(p.name, p) for p in sorted(self.models_dir.glob("*.safetensors"))
                      if MODEL_ID.fullmatch(p.name) and p.is_file()]
        entries = (self._model_entry(i, p) for i, p in found)
        return [e for e in entries if e is not None]

    def model(self, model_id: str) -> dict[str, Any]:
        if MODEL_ID.fullmatch(model_id):
            for m in self.models():
                if m["id"] == model_id:
                    return m
        raise KeyError(model_id)

    def _generator(self, m: dict[str, Any]) -> Any:
        """The CanGenerator of model ``m``, on the CPU (call with ``_gen_lock`` held; sampling from
        it needs no lock: in eval mode without gradients nothing in it changes)."""
        from canstyle.can.generate import CanGenerator

        if m["sha256"] not in self._generators:
            self._remember_generator(m["sha256"], CanGenerator.load(m["path"], "cpu"))
        return self._generators[m["sha256"]]

    def cached_painting(self, model_id: str, seed: int) -> Path | None:
        """The PNG of a painting generated before, or None (KeyError: unknown model)."""
        m = self.model(model_id)
        path = self.paintings / m["sha256"][:16] / f"{seed}.png"
        return path if path.is_file() else None

    def painting_path(self, model_id: str, seed: int) -> Path:
        """The PNG of one CAN painting, generated on first use and cached by model hash."""
        path = self.cached_painting(model_id, seed)
        if path is None:
            m = self.paint_grid(model_id, [seed])
            path = self.paintings / m["sha256"][:16] / f"{seed}.png"
        return path

    def paint_grid(self, model_id: str, seeds: list[int]) -> dict[str, Any]:
        m = self.model(model_id)
        folder = self.paintings / m["sha256"][:16]
        missing = [s for s in dict.fromkeys(seeds) if not (folder / f"{s}.png").is_file()]
        if missing:
            try:
                with self._gen_lock:  # the generator is small; one batch at a time is plenty
                    images = self._generator(m)(missing)
            except CanstyleError as e:
                raise CanstyleError(self.scrub(str(e))) from None
            for s, img in zip(missing, images, strict=True):
                meta = {"stage": "can", "model": m["name"], "model_sha256": m["sha256"], "art_seed": s}
                save_image(img[None], folder / f"{s}.png", meta, overwrite=True)
        return m

    # -- checks at submit ----------------------------------------------------
    def check_request(self, req: dict[str, Any]) -> None:
        """Refuse now (CanstyleError, or KeyError for an unknown id) what would fail in the queue:
        unknown ids, and photos or paintings too thin for the requested size, named by their real size."""
        from canstyle.nst.plan import fit_size, scale_plan, style_size

        opts = stylize_options(req)
        for pid in req["photos"]:
            meta = self._source(pid, "photo")
            w, h = meta["width"], meta["height"]
            try:
                fit_size(shrunk_hw(h, w, 2 * opts.size), opts.size)
            except CanstyleError:
                raise CanstyleError(f"photo {meta.get('name') or pid} is {w}×{h}: at size {opts.size} its short "
                                    f"side would be under 32 px; choose a larger size") from None
        style = req["style"]
        if style["upload"] is None:
            try:
                self.model(style["model"])
            except KeyError:
                raise KeyError(f"unknown model: {style['model']}") from None
            return
        meta = self._source(style["upload"], "style painting")
        w, h = meta["width"], meta["height"]
        hw = shrunk_hw(h, w, 2 * opts.size)
        try:
            for stage in scale_plan(opts, fit_size(hw, opts.size)):
                style_size(hw, round(stage.long * opts.style_scale))
        except CanstyleError:
            raise CanstyleError(f"style painting {meta.get('name') or style['upload']} is {w}×{h}: too thin "
                                "to analyse; crop it closer to a square") from None

    def _source(self, source_id: str, what: str) -> dict[str, Any]:
        try:
            return self.uploads.get(source_id)
        except KeyError:
            raise KeyError(f"unknown {what}: {source_id}") from None

    # -- running a job (on the worker thread) ------------------------------
    def _engine_part(self) -> Any:
        """The one VGG engine, built on first use and shared by every job."""
        from canstyle.nst.stylize import StyleTransfer

        if self._engine is None:
            self._engine = StyleTransfer(self.features, self.device, self.precision)
        return self._engine

    def _parts(self) -> tuple[Any, Any]:
        """The one SR upscaler (built on the first CAN job) and the one VGG engine."""
        from canstyle.pipeline import CAN_SR_MODEL
        from canstyle.sr.upscaler import Upscaler

        engine = self._engine_part()
        if self._upscaler is None:
            self._upscaler = Upscaler(CAN_SR_MODEL, self.device, self.precision)
        return self._upscaler, engine

    def _pipeline(self, m: dict[str, Any]) -> Any:
        """A Pipeline for CAN ``m``: its small generator plus the shared SR and VGG parts."""
        from canstyle.pipeline import Pipeline

        upscaler, engine = self._parts()
        with self._gen_lock:
            can = self._generator(m)
        if engine.device.type != "cpu":  # a device copy; the CPU one keeps painting grids
            key = m["sha256"]
            if key not in self._cans:
                self._cans[key] = replace(can, model=copy.deepcopy(can.model).to(engine.device))
                while len(self._cans) > 4:  # each is a few MB; the big models are never copied
                    self._cans.popitem(last=False)
            self._cans.move_to_end(key)
            can = self._cans[key]
        return Pipeline(generator=can, upscaler=upscaler, engine=engine)

    def _style(self, req: dict[str, Any], size: int, out: Path, cb: Any) -> tuple[Any, torch.Tensor, dict]:
        """(engine, style image, facts to record) for the job's painting."""
        spec = req["style"]
        if spec.get("upload"):  # an uploaded painting needs only the engine, no CAN at all
            style = shrink(self._load(spec["upload"], "the style painting").rgb, 2 * size)
            save_image(style, out / "style.png", {"stage": "style", "upload": spec["upload"]}, overwrite=True)
            return self._engine_part(), style, {"kind": "upload", "upload": spec["upload"]}
        m = self.model(spec["model"])
        pipe = self._pipeline(m)
        art = pipe.paint(spec["seed"], style_size=size, callback=cb)
        meta = {"stage": "sr", "model": m["name"], "model_sha256": m["sha256"], "art_seed": art.seed}
        save_image(art.style, out / "style.png", {**meta, "sr_factor": art.sr_factor}, overwrite=True)
        return pipe.engine, art.style, {"kind": "can", "model": m["id"], "model_name": m["name"],
                                        "model_sha256": m["sha256"], "seed": art.seed,
                                        "sr_factor": art.sr_factor}

    def run_job(self, job: Any, hooks: Any) -> dict[str, Any]:
        """Paint (or load) the style, then stylise each photo into jobs/<id>/result_<i>.png.

        Each result is handed to ``hooks.result`` as soon as its file is written; photos a
        previous run of this job finished (a restart) are kept, not painted again.
        """
        from canstyle.nst.plan import plan_record

        req, out, t0 = job.request, self.jobs / job.id, time.perf_counter()
        opts = stylize_options(req)
        n = len(req["photos"])
        model_id = req["style"].get("model")
        if model_id is not None and model_id not in {m["id"] for m in self.models()}:
            raise CanstyleError(f"the CAN model {model_id} is no longer available (removed or damaged)")
        engine, style, style_info = self._style(req, opts.size, out, _callback(hooks.report, 0, n, 0))
        timings: dict[str, Any] = {"style": round(time.perf_counter() - t0, 2), "stylize": []}
        hooks.info({"style": style_info, "options": asdict(opts), "features": engine.features})
        finished = {r["index"] for r in job.results if (out / r["file"]).is_file()}
        for i, pid in enumerate(req["photos"]):
            if i in finished:
                continue
            t1 = time.perf_counter()
            photo = self._load(pid, f"photo {i + 1}")
            cb = _callback(hooks.report, i, n, req["preview_every"])
            content = shrink(photo.rgb, 2 * opts.size)
            result = engine(content, style, opts, callback=cb,
                            generator=torch.Generator().manual_seed(req["seed"]),
                            preview_every=req["preview_every"])
            plan = plan_record(opts, tuple(content.shape[-2:]))
            params = {"command": "serve", "job": job.id, "photo": pid, "seed": req["seed"],
                      "style": style_info, "features": engine.features, **asdict(opts), "plan": plan}
            self._save_result(out, i, result, photo, params)
            timings["stylize"].append(round(time.perf_counter() - t1, 2))
            hooks.result({"index": i, "photo": pid, "file": f"result_{i}.png", "plan": plan,
                          "width": int(result.shape[-1]), "height": int(result.shape[-2]),
                          "seconds": timings["stylize"][-1]}, {"timings": dict(timings)})
        timings["total"] = round(time.perf_counter() - t0, 2)
        return {"style": style_info, "options": asdict(opts), "features": engine.features, "timings": timings}

    def _load(self, source_id: str, what: str) -> Any:
        """Decode an upload for a job; errors name it as the user knows it, not by its stored path."""
        try:
            path = self.uploads.path(source_id)
            name = self.uploads.get(source_id).get("name") or source_id
        except KeyError:
            raise CanstyleError(f"{what} ({source_id}) was deleted before its turn") from None
        try:
            return load_image(path)
        except CanstyleError as e:
            raise CanstyleError(f"{what} ({name}): " + str(e).replace(f": {path}", "").replace(str(path), "it")) from None

    @staticmethod
    def _save_result(out: Path, i: int, result: torch.Tensor, photo: Any, params: dict[str, Any]) -> None:
        from canstyle.fsutil import atomic_write_bytes
        from canstyle.imageio import alpha_for

        alpha = alpha_for(photo, result)
        # The thumbnail first: once result_<i>.png exists, the result counts as finished.
        atomic_write_bytes(out / f"result_{i}.thumb.jpg", jpeg_bytes(result, THUMB))
        save_image(result, out / f"result_{i}.png", params, alpha=alpha, overwrite=True)


def stylize_options(req: dict[str, Any]) -> Any:
    """StylizeOptions from a job request; only whitelisted knobs (never ``init``, a path)."""
    from canstyle.nst.plan import StylizeOptions

    # The quality preset and the iteration overrides go to the one schedule that the CLI and
    # Pipeline use too (nst.plan.scale_plan); the studio keeps no budgets of its own.
    opts = StylizeOptions(
        size=req["size"], style_weight=req["style_strength"], preserve_color=req["preserve_color"],
        loss_scale=req.get("loss_scale", "none"),  # jobs saved before it existed ran with none
        quality=req.get("quality", "standard"), iterations=req.get("iterations"),
        coarse_iterations=req.get("coarse_iterations"),
    )
    opts.validate()
    return opts


def _callback(report: Any, index: int, count: int, preview_every: int) -> Any:
    """Turn Progress records into the JSON snapshot (plus a JPEG preview) the page shows."""

    def cb(p: Progress) -> None:
        preview = jpeg_bytes(p.image, PREVIEW) if p.image is not None else None
        report({"stage": p.stage, "step": p.step, "total": p.total, "scale": p.scale,
                "n_scales": p.n_scales, "size": [int(p.size[0]), int(p.size[1])],
                "loss": _finite(p.loss), "photo": index, "photos": count}, preview)

    return cb
