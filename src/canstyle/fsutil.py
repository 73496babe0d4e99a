"""Atomic, no-clobber file writes shared by images, weights and checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from canstyle.errors import CanstyleError

# mkstemp creates files readable by the owner only; outputs should get the usual umask-based
# mode instead. Read the umask once, at import (reading it means setting it).
UMASK = os.umask(0o022)
os.umask(UMASK)


def check_writable_folder(folder: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> Path:
    """Fail early (before loading data or weights) unless files can be made in ``folder``.

    The folder itself need not exist (commands make their output folders when writing), but
    the nearest part of it that exists must be a folder this process may write in. ``target``
    names what was to be written there, for the message.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CanstyleError(f"{existing} is a file, not a folder, so {target or folder} cannot be written")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CanstyleError(f"cannot write in {existing}")
    return folder


def check_writable(path: str | os.PathLike[str], overwrite: bool = False,
                   inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Fail early (before any long computation) if the file ``path`` cannot be written, or if it
    is one of ``inputs``: --overwrite replaces old results, never the images a command reads."""
    p = Path(path)
    if p.is_dir():
        raise CanstyleError(f"output path is a directory: {p}")
    if p.exists() and any(_same_file(p, Path(i)) for i in inputs):
        raise CanstyleError(f"output {p} is one of the input images; choose another -o")
    if p.exists() and not overwrite:
        raise CanstyleError(f"output exists: {p} (choose another name or pass --overwrite)")
    check_writable_folder(p.parent, target=p)
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # links and different spellings of one path too
    except OSError:
        return False


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Call ``write(tmp)`` then move tmp to ``path`` in one step.

    Without ``overwrite`` the final step is a hard link, which fails if ``path``
    appeared meanwhile, so an existing file is never replaced silently.
    """
    final = Path(path)
    if not overwrite and final.exists():
        raise CanstyleError(f"output exists: {final} (choose another name or pass --overwrite)")
    with _temp_beside(final) as tmp:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)
        if overwrite:
            os.replace(tmp, final)
            return final
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise CanstyleError(f"output exists: {final} (it appeared while writing)") from None
        except OSError:
            # Filesystems without hard links: best effort check-then-rename.
            if final.exists():
                raise CanstyleError(f"output exists: {final}") from None
            os.replace(tmp, final)
    return final


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself for a few renames in it (processes and
    threads wait for each other; no lock file is left behind). Where flock is missing or
    refused (not POSIX, some network filesystems) this locks nothing."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_folder(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Rename folder ``new`` to ``dest``. An old ``dest`` is renamed aside first and deleted
    after, so a reader finds the old folder or the new one (for an instant neither), never a
    half-deleted one. Two renames are not one step: callers serialise with ``folder_lock``."""
    new, dest = Path(new), Path(dest)
    aside = new.with_name(new.name + ".old")
    had_old = dest.exists()
    if had_old:
        os.rename(dest, aside)
    try:
        os.rename(new, dest)
    except OSError:
        if had_old:
            os.rename(aside, dest)
        raise
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)


SAMPLE_BYTES = 1 << 12


def content_fingerprint(root: str | os.PathLike[str]) -> str:
    """A key for a file or folder that survives copying, moving and re-checkout.

    It hashes each file's path relative to ``root``, its size, and its first and last 4 KiB,
    not absolute paths or mtimes: a data set copied to another disk or machine keeps its key, so
    its caches are not rebuilt, while a re-encoded or replaced image changes it (its size, or
    its header with the quantisation tables). 8 KiB a file keeps a WikiArt-sized folder (80k
    images) to well under a gigabyte of reads; an edit that keeps a file's size and both ends
    goes unnoticed, which is what ``prepare-data --overwrite`` is for.
    """
    root = Path(root)
    h = hashlib.sha1()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        rel = p.name if p == root else p.relative_to(root).as_posix()
        size = p.stat().st_size
        h.update(f"{rel}|{size}\n".encode())
        with open(p, "rb") as f:
            h.update(f.read(SAMPLE_BYTES))
            if size > 2 * SAMPLE_BYTES:
                f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()[:16]
