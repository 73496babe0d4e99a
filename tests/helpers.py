"""Plain helpers shared by test modules; the fixtures built on them live in conftest.py.

Test modules import shared code from here, never from each other. Sections: paths, the CLI's
failure shape, small image files, synthetic art sources (the CAN data layouts), a tiny CAN, the
web studio (app, uploads, jobs) and a live uvicorn server.
"""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

# -- paths -------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # data that sits beside the clone (CI puts it there)
EXAMPLES = REPO / "examples"


# -- the CLI's failure shape ------------------------------------------------------------------
# Every user error: exit code 2 and one stderr line, "canstyle: error: ..." from a failed run or
# "canstyle COMMAND: error: ... (see --help)" from a bad flag; never a traceback.
ERROR_LINE = re.compile(r"canstyle(?: [a-z][a-z-]*)?: error: \S")


def assert_one_line_error(code: object, err: str, *needles: str) -> str:
    """Check a finished command: exit ``code`` 2 and ``err`` (its whole stderr) exactly one
    ``canstyle...: error: ...`` line containing every needle. Returns that line."""
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0].strip()
    assert ERROR_LINE.match(line), err
    for needle in needles:
        assert needle in line, (needle, err)
    return line


def assert_fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str,
                         stdout_lacks: str | None = None) -> str:
    """Run ``canstyle ARGV`` in-process and check it fails cleanly: SystemExit(2) and one error
    line on stderr containing every needle (see ``assert_one_line_error``). With
    ``stdout_lacks``, that text must not be on stdout either (e.g. nothing was processed).
    Returns the error line."""
    from canstyle.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    if stdout_lacks is not None:
        assert stdout_lacks not in out, (stdout_lacks, out)
    return assert_one_line_error(e.value.code, err, *needles)


def cli_help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """``canstyle COMMAND --help`` in-process: SystemExit(0), nothing on stderr. Returns stdout."""
    from canstyle.cli import main

    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out, err = capsys.readouterr()
    assert e.value.code == 0 and err == "", (e.value.code, err)
    return out


# -- small image files ----------------------------------------------------------------------------
def png_bytes(w: int = 90, h: int = 60, kind: str = "gradient") -> bytes:
    """A real PNG: a gradient, incompressible ``noise`` (many bytes) or ``solid`` black (many
    pixels in few bytes)."""
    y, x = np.mgrid[0:h, 0:w]
    if kind == "noise":
        rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "solid":
        rgb = np.zeros((h, w, 3), np.uint8)
    else:
        rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) % 40 * 6], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def png_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h pixels but that carries almost no data (a decompression
    bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
            + chunk(b"IEND", b""))


def truncated_weights(folder: Path) -> Path:
    """SR weights whose header is intact but whose tensors are cut off: ``folder/trunc.safetensors``."""
    from canstyle.sr.zoo import ART, asset_path

    data = asset_path(ART).read_bytes()
    path = folder / "trunc.safetensors"
    path.write_bytes(data[: len(data) // 2])
    return path


# -- synthetic art sources: the three layouts ``prepare`` reads -----------------------------------
COLOURS = {"Baroque": (150, 60, 30), "Impressionism": (70, 140, 220), "Ukiyo_e": (40, 170, 90)}
CORRUPT = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40  # a JPEG header and nothing after it


def style_painting(style: str, i: int, h: int = 96, w: int = 120) -> Image.Image:
    """A small synthetic 'painting' whose colour and texture depend on its style (a COLOURS key)."""
    rng = np.random.default_rng(i)
    base = np.array(COLOURS[style], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    freq = {"Baroque": 0.05, "Impressionism": 0.2, "Ukiyo_e": 0.5}[style]
    pattern = np.sin(xx * freq + i) * np.cos(yy * freq)
    img = base + 60 * pattern[..., None] + rng.normal(0, 10, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_folders(root: Path, per_style: int = 6) -> Path:
    """One folder per style, plus a corrupt JPEG and a text file that must be skipped."""
    for s in COLOURS:
        (root / s).mkdir(parents=True, exist_ok=True)
        for i in range(per_style):
            style_painting(s, i, 80 + 8 * i, 100).save(root / s / f"p{i:02d}.jpg", quality=90)
    (root / "Baroque" / "broken.jpg").write_bytes(CORRUPT)
    (root / "Baroque" / "notes.txt").write_text("not an image")
    return root


def make_csv(root: Path, per_style: int = 6) -> Path:
    """A ``path,style`` CSV with a corrupt and a missing image among the rows."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["path,style"]
    for s in COLOURS:
        for i in range(per_style):
            style_painting(s, i).save(root / "img" / f"{s}_{i}.png")
            rows.append(f"img/{s}_{i}.png,{s}")
    (root / "img" / "bad.jpg").write_bytes(CORRUPT)
    rows += ["img/bad.jpg,Baroque", "img/missing.jpg,Ukiyo_e"]
    (root / "styles.csv").write_text("\n".join(rows) + "\n")
    return root / "styles.csv"


def make_parquet(root: Path, per_style: int = 6) -> Path:
    """One shard with the huggan/wikiart schema: image{bytes,path}, artist, genre, style (ints)."""
    from canstyle.can.sources import HUGGAN_STYLES

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    images, styles = [], []
    for s in COLOURS:
        for i in range(per_style):
            images.append({"bytes": jpeg_bytes(style_painting(s, i)), "path": None})
            styles.append(HUGGAN_STYLES.index(s))
    images += [{"bytes": CORRUPT, "path": None}, {"bytes": None, "path": None}]
    styles += [HUGGAN_STYLES.index("Baroque"), HUGGAN_STYLES.index("Ukiyo_e")]
    n = len(styles)
    table = pa.table({
        "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "artist": pa.array([0] * n, type=pa.int64()), "genre": pa.array([1] * n, type=pa.int64()),
        "style": pa.array(styles, type=pa.int64()),
    })
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "train-00000-of-00001.parquet")
    return root


# -- a tiny CAN ----------------------------------------------------------------------------------
def tiny_generator(seed: int = 0) -> tuple[Any, Any]:
    """A random 64 px CAN generator (width 1/8, three styles) in eval mode, and its ModelConfig.
    DCGAN init paints flat grey: real BN statistics and a louder last layer make seeds distinct.
    Deterministic for a given seed (the pinned outputs rely on it)."""
    import torch

    from canstyle.can.models import Generator, ModelConfig, refresh_bn_stats

    torch.manual_seed(seed)
    cfg = ModelConfig(preset=64, n_classes=3, width=0.125)
    g = Generator(cfg).eval()
    refresh_bn_stats(g)
    g.eval()
    with torch.no_grad():
        g.body[-2].weight.mul_(20)
    return g, cfg


def save_tiny_can(path: Path, seed: int = 0) -> Path:
    """``tiny_generator(seed)`` saved as a CAN generator file (styles A, B, C) at ``path``."""
    from canstyle.can.generate import save_generator

    g, cfg = tiny_generator(seed)
    return save_generator(g.state_dict(), cfg.to_json(), ["A", "B", "C"], path)


# -- the web studio: tiny jobs (64 px, one scale, VGG16) on the ``models_dir`` fixture's CAN ------
TINY = {"size": 64, "iterations": 3, "coarse_iterations": 0, "preview_every": 1}
LONG = {"size": 64, "iterations": 2000, "coarse_iterations": 0, "preview_every": 1}
MAX_BYTES, MAX_PIXELS = 300_000, 250_000
TERMINAL = {"done", "failed", "cancelled"}


def make_app(out: Path, models_dir: Path, **kw: Any) -> Any:
    """The studio app for TestClient (Host: testserver) with small upload caps; ``kw`` overrides."""
    from canstyle.web.app import create_app

    kw = {"allowed_hosts": {"testserver"}, "max_upload_bytes": MAX_BYTES, "max_upload_pixels": MAX_PIXELS,
          **kw}
    return create_app(out, models_dir=models_dir, features="vgg16", device="cpu", **kw)


def upload(c: TestClient, data: bytes, kind: str = "photo") -> dict[str, Any]:
    r = c.post(f"/api/uploads?kind={kind}", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 201, r.text
    return r.json()


def submit(c: TestClient, photo: str, style: dict[str, Any] | None = None, **opts: Any) -> dict[str, Any]:
    """Queue a TINY job on one photo (style: the tiny CAN's seed 3 unless given); ``opts`` override."""
    body = {"photos": [photo], "style": style or {"model": "tiny.safetensors", "seed": 3}, "seed": 1,
            **TINY, **opts}
    r = c.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def wait(c: TestClient, job_id: str, until: set[str] = TERMINAL, timeout: float = 90) -> dict[str, Any]:
    """Poll until the job's status is in ``until`` (``{"running"}`` also waits for progress)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] in until and (until != {"running"} or job["progress"]):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {until}: {job}")


@contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(15)
        sock.close()
