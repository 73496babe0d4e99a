"""The ``canstyle`` command.

Subcommands live in their stage's module and are imported only when invoked,
so ``canstyle --help`` starts instantly and one stage's heavy imports never
slow another. Each module exposes ``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import importlib
import logging
import sys

from canstyle import __version__
from canstyle.cliutil import Formatter, OneLineParser, fail
from canstyle.errors import CanstyleError

# name, module, one-line help. Add a stage by adding a line here.
_TABLE = """
demo          canstyle.demo_cli           paint the bundled photos with a CAN-made painting (offline)
create        canstyle.create_cli         invent a painting with the CAN, upscale it, paint your photos with it
stylize       canstyle.nst.cli            paint a photo in the style of one or more paintings (Gatys)
upscale       canstyle.sr.cli             upscale images x2/x4/x8 with a super-resolution network
train-sr      canstyle.sr.train_cli       fine-tune a super-resolution model on your images
eval-sr       canstyle.sr.eval_cli        PSNR/SSIM of a super-resolution model against bicubic
prepare-data  canstyle.can.data_cli       convert paintings into a compact training cache
train         canstyle.can.train_cli      train a Creative Adversarial Network
generate      canstyle.can.generate_cli   generate paintings from a CAN checkpoint
export        canstyle.can.export_cli     export a CAN generator as small safetensors
evaluate      canstyle.can.evaluate_cli   style-ambiguity and quality metrics of a CAN
serve         canstyle.web.cli            the local web studio: upload photos, pick paintings, watch jobs live
"""
COMMANDS: dict[str, tuple[str, str]] = {
    name: (module, text) for name, module, text in (line.split(None, 2) for line in _TABLE.strip().splitlines())
}


def _top_parser() -> OneLineParser:
    p = OneLineParser(
        prog="canstyle",
        description="CAN paintings, super-resolution and neural style transfer.",
        epilog="commands:\n" + "\n".join(f"  {k:<14}{h}" for k, (_, h) in COMMANDS.items())
        + "\n\nRun 'canstyle COMMAND --help' for a command's options.",
        formatter_class=Formatter,
    )
    p.add_argument("--version", action="version", version=f"canstyle {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="what to do")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Parse only up to the command name; the rest belongs to the subcommand.
    idx = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    ns = top.parse_args(argv[: idx + 1])
    rest = argv[idx + 1 :]
    # -v also works after the command ("canstyle stylize ... -v"), where an error's hint sends people.
    if any(a in ("-v", "--verbose") for a in rest):
        ns.verbose, rest = True, [a for a in rest if a not in ("-v", "--verbose")]
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO, format="%(message)s")
    module_name, help_text = COMMANDS[ns.command]
    module = importlib.import_module(module_name)
    sub = OneLineParser(prog=f"canstyle {ns.command}", description=help_text, formatter_class=Formatter)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    if getattr(args, "torch_threads", None) is not None:  # serve's own --threads is for its worker
        import torch

        torch.set_num_threads(args.torch_threads)
    try:
        return int(module.run(args) or 0)
    except CanstyleError as e:
        fail(str(e))
    except OSError as e:  # disk full, permissions, a file where a folder should be: the user's to fix
        if ns.verbose:
            raise
        fail(f"{e} (run with -v for details)")
    except KeyboardInterrupt:
        print("canstyle: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
