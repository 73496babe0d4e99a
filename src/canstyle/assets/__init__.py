"""Files shipped with canstyle, and the constants that name them (library code and CLIs alike
import them from here, never from a CLI module)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_CAN = ASSETS / "can_default.safetensors"  # the embedded CAN (docs/can.md)
DEMO_DIR = ASSETS / "demo"
DEMO_PHOTOS = ("astronaut.jpg", "chelsea.jpg")  # credits: demo/CREDITS.md
DEMO_ART_SEED = 56  # picked by eye (colourful, strong shapes) from the default CAN's seeds 0-63, docs/can-default-128.png
