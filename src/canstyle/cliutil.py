"""Helpers that derive argparse flags from API dataclasses, and one-line errors.

The Python API is the single source of truth: each option dataclass field
becomes a ``--flag`` with its default and help text, so the CLI cannot drift
from the API.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any, NoReturn

from canstyle.errors import CanstyleError
from canstyle.seeds import MAX_SEED


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each default once: not after a help text that explains its own default, and not
    as a bare "None" (a required option, or one whose default the help text describes)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default in (None, "") or action.required:
            return text
        if isinstance(action, argparse._StoreTrueAction):  # an off switch: "(default: False)" is noise
            return text
        return super()._get_help_string(action)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return v




def seed_type(text: str) -> int:
    """argparse type of a seed flag: an integer in 0..MAX_SEED, so torch never overflows."""
    v = _int(text)
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED} (2**32 - 1), got {text!r}")
    return v


def _field_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_type(args[0])
    if origin is list:
        return _float_list
    return {int: _int}.get(tp, tp)


# Field types beyond the annotation, named in a field's metadata as ``kind`` (the library
# cannot import argparse types from here).
KINDS: dict[str, Any] = {"seed": seed_type}


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` flag per dataclass field with help text, with its default and help.

    A field without ``help`` in its metadata is internal (set by the library, not the user).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        kind = KINDS[f.metadata["kind"]] if "kind" in f.metadata else _field_type(hints[f.name])
        kwargs: dict[str, Any] = {"default": f.default, "help": f.metadata["help"], "dest": f.name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            if kind is _float_list:
                kwargs["metavar"] = "W,W"
        parser.add_argument(flag, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def device_type(text: str) -> str:
    """argparse type of every --device flag: auto, cpu, cuda, mps or cuda:N."""
    import re

    from canstyle.device import DEVICES

    if text in DEVICES or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(DEVICES)} or cuda:N, got {text!r}")


def threads_type(text: str) -> int:
    """argparse type of --threads: a positive integer."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def add_runtime_args(parser: argparse.ArgumentParser, seed: bool = True, threads: bool = True) -> None:
    """Flags every compute command shares (``serve`` has its own --threads, for its worker)."""
    from canstyle.device import DEVICES, PRECISIONS

    if threads:
        add_threads_arg(parser)

    parser.add_argument("--device", default="auto", type=device_type, metavar="DEVICE",
                        help=f"where to compute: {', '.join(DEVICES)} or cuda:N")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="autocast precision; auto = bf16 on CPUs with native bf16 and on CUDA, else fp32",
    )
    if seed:
        parser.add_argument("--seed", type=seed_type, default=None, help="random seed (default: random, recorded in the output)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or progress lines")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """--threads: torch's CPU threads, for every command that computes (``main`` applies it)."""
    # On a CPU that other work keeps busy, fewer threads than cores can be faster: the threads
    # of one operation wait for the slowest. Measured on 2 cores with one kept busy, a 64 px
    # stylise took 15.2 s with 2 threads and 9.1 s with 1 (77 s against 6.4 s beside a pytest run).
    parser.add_argument("--threads", dest="torch_threads", metavar="N", type=threads_type, default=None,
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else all cores)")


def add_features_arg(parser: argparse.ArgumentParser) -> None:
    """--features: the style-transfer feature network, for every command that paints."""
    from canstyle.nst.features import DEFAULT_FEATURES, FEATURE_CHOICES

    parser.add_argument("--features", default=DEFAULT_FEATURES, choices=FEATURE_CHOICES,
                        help="feature network; auto = VGG19 if its weights are on disk, else VGG16 (offline)")


def fail(message: str) -> NoReturn:
    print(f"canstyle: error: {message}", file=sys.stderr)
    raise SystemExit(2)


__all__ = ["CanstyleError", "OneLineParser", "Formatter", "add_dataclass_args", "dataclass_from_args", "device_type",
           "add_runtime_args", "add_threads_arg", "add_features_arg", "fail", "seed_type", "threads_type", "MAX_SEED"]
