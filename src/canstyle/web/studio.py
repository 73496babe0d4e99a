"""The canstyle work behind the web studio: uploads, CAN models, painting grids, job runs.

Everything the browser names is an id we generated (an upload's hash, a job id, a
model listed from the models dir); no file name from a request ever becomes a path.
Only exported ``*.safetensors`` generators are listed as models, so nothing from the
web can make the server unpickle a file or run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write_bytes
from canstyle.imageio import load_image, save_image, tensor_to_pil
from canstyle.progress import Progress

log = logging.getLogger("canstyle.web")

UPLOAD_ID = re.compile(r"[0-9a-f]{20}")
MODEL_ID = re.compile(r"default|[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.safetensors")
THUMB = 256  # long side of upload thumbnails
PREVIEW = 384  # long side of live previews: enough to judge, small enough to send often


class UploadTooLarge(CanstyleError):
    """An upload over the byte or pixel limit (HTTP 413)."""


def jpeg_bytes(img: torch.Tensor, long_side: int, quality: int = 85) -> bytes:
    im = tensor_to_pil(img)
    im.thumbnail((long_side, long_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def shrink(img: torch.Tensor, long_side: int) -> torch.Tensor:
    """Downscale so the long side is at most ``long_side``; bounds memory for huge photos."""
    from canstyle.nst.losses import resize_to

    h, w = img.shape[-2:]
    if max(h, w) <= long_side:
        return img
    s = long_side / max(h, w)
    return resize_to(img, (max(1, round(h * s)), max(1, round(w * s))))


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None  # JSON has no NaN or inf


class Studio:
    """Uploads, models, paintings and the job runner, all inside one output folder."""

    def __init__(self, output: Path, models_dir: Path | None = None, *, features: str = "auto",
                 device: str = "auto", precision: str = "auto", max_pixels: int = 40_000_000,
                 max_pipelines: int = 2) -> None:
        from canstyle.demo_cli import DEMO_DIR, DEMO_PHOTOS

        self.output = Path(output)
        self.uploads = self.output / "uploads"
        self.paintings = self.output / "paintings"
        self.jobs = self.output / "jobs"
        for d in (self.uploads, self.paintings, self.jobs):
            d.mkdir(parents=True, exist_ok=True)
        self.models_dir = Path(models_dir) if models_dir is not None else self.output / "models"
        self.features, self.device, self.precision = features, device, precision
        self.max_pixels = max_pixels
        self.bundled = {f"demo-{Path(n).stem}": DEMO_DIR / n for n in DEMO_PHOTOS}
        self._decode_lock = threading.Lock()  # one full-size decode at a time bounds memory
        self._gen_lock = threading.Lock()
        self._sha: dict[tuple[str, int, int], str] = {}
        self._generators: OrderedDict[str, Any] = OrderedDict()
        self._pipelines: OrderedDict[str, Any] = OrderedDict()  # used by the worker thread only
        self._max_pipelines = max_pipelines

    # -- uploads ---------------------------------------------------------
    def add_upload(self, data: bytes, kind: str) -> dict[str, Any]:
        """Validate (must decode, within the pixel limit) and store under a generated name."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
        except Image.DecompressionBombError:
            raise UploadTooLarge("image is too large to decode safely") from None
        except Exception:  # undecodable: load_image below reports it clearly
            w = h = 0
        if w * h > self.max_pixels:
            raise UploadTooLarge(f"image is too large: {w}x{h} = {w * h / 1e6:.1f} MP, "
                                 f"the limit is {self.max_pixels / 1e6:.1f} MP")
        with self._decode_lock:
            try:
                img = load_image(data, max_pixels=self.max_pixels)
            except CanstyleError as e:
                raise CanstyleError(str(e).replace("<upload>", "the upload")) from None
            thumb = jpeg_bytes(img.rgb, THUMB)
        uid = hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()[:20]
        h, w = img.rgb.shape[-2:]
        meta = {"id": uid, "kind": kind, "width": w, "height": h, "bytes": len(data),
                "mode": img.mode, "created": time.time()}
        # The original bytes are kept only for the job to decode again; never served back.
        atomic_write_bytes(self.uploads / f"{uid}.img", data)
        atomic_write_bytes(self.uploads / f"{uid}.thumb.jpg", thumb)
        atomic_write_bytes(self.uploads / f"{uid}.json", json.dumps(meta).encode())
        return meta

    def list_sources(self, kind: str) -> list[dict[str, Any]]:
        """Uploaded images of one kind, newest first; bundled photos after them."""
        out = []
        for p in self.uploads.glob("*.json"):
            try:
                meta = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("kind") == kind and UPLOAD_ID.fullmatch(str(meta.get("id", ""))):
                out.append(meta)
        out.sort(key=lambda m: m.get("created", 0), reverse=True)
        if kind == "photo":
            out += [{"id": k, "kind": "photo", "bundled": True, "name": p.name} for k, p in self.bundled.items()]
        return out

    def source_path(self, source_id: str) -> Path:
        """The stored image of an upload or bundled photo id (KeyError if unknown)."""
        if source_id in self.bundled:
            return self.bundled[source_id]
        if UPLOAD_ID.fullmatch(source_id) and (self.uploads / f"{source_id}.img").is_file():
            return self.uploads / f"{source_id}.img"
        raise KeyError(source_id)

    def thumb_path(self, source_id: str) -> Path:
        if source_id in self.bundled:
            return self.bundled[source_id]
        self.source_path(source_id)  # validates the id
        return self.uploads / f"{source_id}.thumb.jpg"

    # -- CAN models and painting grids -------------------------------------
    def _file_sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)  # a replaced file gets a new hash
        if key not in self._sha:
            from canstyle.weights import sha256_file

            self._sha[key] = sha256_file(path)
        return self._sha[key]

    def _model_entry(self, model_id: str, path: Path) -> dict[str, Any] | None:
        from canstyle.can.generate import EXPORT_FORMAT
        from canstyle.weights import read_metadata

        try:
            meta = read_metadata(path)
            if meta.get("format") != EXPORT_FORMAT:
                return None
            cfg = json.loads(meta["config"])
            classes = json.loads(meta.get("classes", "[]"))
            sha = self._file_sha(path)
        except (CanstyleError, OSError, ValueError, KeyError, TypeError) as e:  # not a readable export
            log.warning("skipping model %s: %s", path, e)
            return None
        return {"id": model_id, "name": "default CAN" if model_id == "default" else path.stem,
                "preset": cfg.get("preset"), "art_size": cfg.get("preset"), "classes": classes,
                "step": meta.get("step"), "sha256": sha, "path": path}

    def models(self) -> list[dict[str, Any]]:
        """The embedded default CAN, then every exported generator in the models dir."""
        from canstyle.pipeline import DEFAULT_CAN

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
        from canstyle.can.generate import load_generator

        if m["sha256"] not in self._generators:
            self._generators[m["sha256"]] = load_generator(m["path"], "cpu")[0]
            while len(self._generators) > 4:
                self._generators.popitem(last=False)
        return self._generators[m["sha256"]]

    def painting_path(self, model_id: str, seed: int) -> Path:
        """The PNG of one CAN painting, generated on first use and cached by model hash."""
        m = self.model(model_id)
        path = self.paintings / m["sha256"][:16] / f"{seed}.png"
        if not path.is_file():
            self.paint_grid(model_id, [seed])
        return path

    def paint_grid(self, model_id: str, seeds: list[int]) -> dict[str, Any]:
        from canstyle.can.generate import generate

        m = self.model(model_id)
        folder = self.paintings / m["sha256"][:16]
        missing = [s for s in dict.fromkeys(seeds) if not (folder / f"{s}.png").is_file()]
        if missing:
            with self._gen_lock:  # the generator is small; one batch at a time is plenty
                images = generate(self._generator(m), missing)
            for s, img in zip(missing, images, strict=True):
                meta = {"stage": "can", "model": m["name"], "model_sha256": m["sha256"], "art_seed": s}
                save_image(img[None], folder / f"{s}.png", meta, overwrite=True)
        return m

    # -- running a job (on the worker thread) ------------------------------
    def _pipeline(self, m: dict[str, Any]) -> Any:
        from canstyle.pipeline import Pipeline

        key = m["sha256"]
        if key not in self._pipelines:
            ckpt = None if m["id"] == "default" else m["path"]
            self._pipelines[key] = Pipeline(ckpt, features=self.features, device=self.device,
                                            precision=self.precision)
            while len(self._pipelines) > self._max_pipelines:
                self._pipelines.popitem(last=False)
        self._pipelines.move_to_end(key)
        return self._pipelines[key]

    def _any_model(self) -> dict[str, Any]:
        models = self.models()
        if not models:
            raise CanstyleError("no CAN model is available (reinstall canstyle for the default)")
        cached = [m for m in models if m["sha256"] in self._pipelines]
        return (cached or models)[0]

    def _style(self, req: dict[str, Any], size: int, out: Path, cb: Any) -> tuple[Any, torch.Tensor, dict]:
        """(engine, style image, facts to record) for the job's painting."""
        spec = req["style"]
        if spec.get("upload"):
            pipe = self._pipeline(self._any_model())
            style = shrink(load_image(self.source_path(spec["upload"])).rgb, 2 * size)
            save_image(style, out / "style.png", {"stage": "style", "upload": spec["upload"]}, overwrite=True)
            return pipe.engine, style, {"kind": "upload", "upload": spec["upload"]}
        m = self.model(spec["model"])
        pipe = self._pipeline(m)
        art = pipe.paint(spec["seed"], style_size=size, callback=cb)
        meta = {"stage": "sr", "model": m["name"], "model_sha256": m["sha256"], "art_seed": art.seed}
        save_image(art.style, out / "style.png", {**meta, "sr_factor": art.sr_factor}, overwrite=True)
        return pipe.engine, art.style, {"kind": "can", "model": m["id"], "model_name": m["name"],
                                        "model_sha256": m["sha256"], "seed": art.seed,
                                        "sr_factor": art.sr_factor}

    def run_job(self, job: Any, report: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Paint (or load) the style, then stylise each photo; results go to jobs/<id>/."""
        from canstyle.nst.losses import resize_to
        from canstyle.nst.stylize import plan_record

        req, out, t0 = job.request, self.jobs / job.id, time.perf_counter()
        opts = stylize_options(req)
        n = len(req["photos"])
        engine, style, style_info = self._style(req, opts.size, out, _callback(report, 0, n, 0))
        timings: dict[str, Any] = {"style": round(time.perf_counter() - t0, 2), "stylize": []}
        results = []
        for i, pid in enumerate(req["photos"]):
            t1 = time.perf_counter()
            photo = load_image(self.source_path(pid))
            cb = _callback(report, i, n, req["preview_every"])
            content = shrink(photo.rgb, 2 * opts.size)
            result = engine(content, style, opts, callback=cb,
                            generator=torch.Generator().manual_seed(req["seed"]),
                            preview_every=req["preview_every"])
            alpha = None if photo.alpha is None else resize_to(photo.alpha, tuple(result.shape[-2:]))
            name = f"result_{i}.png"
            plan = plan_record(opts, tuple(content.shape[-2:]))
            params = {"command": "serve", "job": job.id, "photo": pid, "seed": req["seed"],
                      "style": style_info, "features": engine.features, **asdict(opts), "plan": plan}
            save_image(result, out / name, params, alpha=alpha, overwrite=True)
            results.append({"index": i, "photo": pid, "file": name, "plan": plan,
                            "width": int(result.shape[-1]), "height": int(result.shape[-2])})
            timings["stylize"].append(round(time.perf_counter() - t1, 2))
        timings["total"] = round(time.perf_counter() - t0, 2)
        return results, {"style": style_info, "options": asdict(opts), "features": engine.features,
                         "timings": timings}


def stylize_options(req: dict[str, Any]) -> Any:
    """StylizeOptions from a job request; only whitelisted knobs (never ``init``, a path)."""
    from canstyle.nst.stylize import StylizeOptions

    # The quality preset and the iteration overrides go to the one schedule that the CLI and
    # Pipeline use too (nst.stylize.scale_plan); the studio keeps no budgets of its own.
    opts = StylizeOptions(
        size=req["size"], style_weight=req["style_strength"], preserve_color=req["preserve_color"],
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

