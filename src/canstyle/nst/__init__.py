"""Gatys neural style transfer: feature networks, losses and the optimiser loop."""
