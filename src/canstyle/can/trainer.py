"""One CAN training step, the models and optimisers it owns, their state, and the stop flag."""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from canstyle.can import dataset as ds
from canstyle.can.checkpoint import rng_state, set_rng_state
from canstyle.can.dist import DistInfo, set_bn_sync, unwrap
from canstyle.can.losses import discriminator_loss, generator_loss, normalized_entropy
from canstyle.can.models import Generator, ModelConfig, build, refresh_bn_stats
from canstyle.device import autocast

log = logging.getLogger(__name__)

METRICS = ("d_loss", "g_loss", "d_adv", "d_style", "g_adv", "ambiguity", "style_acc_real",
           "fake_style_entropy", "d_real", "d_fake")


class Trainer:
    """G, D, the EMA generator, both Adam optimisers and the step that updates them."""

    def __init__(self, opts: Any, cfg: ModelConfig, batches: ds.Batches, class_weights: torch.Tensor | None,
                 seed: int, device: torch.device, dtype: torch.dtype, info: DistInfo) -> None:
        self.opts, self.cfg, self.batches, self.seed = opts, cfg, batches, seed
        self.start_step = 0  # set by a resume
        self.device, self.dtype, self.info = device, dtype, info
        torch.manual_seed(seed)  # the same initial weights on every rank and world size
        g, d = build(cfg)
        torch.manual_seed(seed + 1000 * info.rank)  # then per-rank streams for anything else
        self.mf = torch.channels_last if opts.channels_last else torch.contiguous_format
        g, d = g.to(device, memory_format=self.mf), d.to(device, memory_format=self.mf)
        self.ema = copy.deepcopy(g).eval().requires_grad_(False)
        betas = (opts.beta1, opts.beta2)
        self.opt_g = torch.optim.Adam(g.parameters(), lr=opts.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=opts.lr_d, betas=betas)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.cw = class_weights.to(device) if class_weights is not None else None
        self.ops = ds.parse_augment(opts.augment)
        self.G: nn.Module = g
        self.D: nn.Module = d
        if info.enabled:
            # BatchNorm statistics over the global batch, as on one process (G always; D when
            # it is the paper's BatchNorm D)
            set_bn_sync(g, True)
            set_bn_sync(d, True)
            ids = [device.index] if device.type == "cuda" else None
            self.G = nn.parallel.DistributedDataParallel(g, device_ids=ids)
            self.D = nn.parallel.DistributedDataParallel(d, device_ids=ids)

    @property
    def g(self) -> Generator:
        return unwrap(self.G)  # type: ignore[return-value]

    @property
    def d(self) -> nn.Module:
        return unwrap(self.D)

    def _aug(self, x: torch.Tensor, step: int, stream: int) -> torch.Tensor:
        gb = self.batches.local * self.info.world
        u = ds.augment_params(self.seed, step, stream, gb, self.info.rank, self.info.world)
        return ds.diff_augment(x, self.ops, u)

    def step(self, step: int) -> torch.Tensor:
        """One D update then one G update; returns this rank's metrics (see METRICS)."""
        o, b = self.opts, self.batches.local
        real, labels = self.batches.get(step)
        real = real.mul(2).sub(1).to(self.device, memory_format=self.mf)  # the GAN works in [-1, 1]
        labels = labels.to(self.device)
        z = ds.global_noise(self.seed, step, b * self.info.world, self.cfg.z_dim, self.info.rank,
                            self.info.world).to(self.device)
        with autocast(self.device, self.dtype):
            fake = self.G(z)  # one G forward serves both updates
        # D: one forward on real and fake together, so DDP sees a single forward
        # per backward (BatchNorm with two D forwards breaks DDP).
        x = torch.cat([self._aug(real, step, 3), self._aug(fake.detach().float(), step, 4)])
        with autocast(self.device, self.dtype):
            logit, style = self.D(x)
        d_loss, dp = discriminator_loss(logit[:b], logit[b:], style[:b], labels, o.adv_loss, self.cw,
                                        o.style_weight)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)
        g_loss, gp = self._g_step(fake, step, x[:b] if not self.cfg.spectral_norm else None)
        self._update_ema(step)
        with torch.no_grad():
            acc = (style[:b].argmax(1) == labels).float().mean()
            ent = normalized_entropy(style[b:]).mean()
            zero = torch.zeros((), device=self.device)
            vals = [d_loss, g_loss, dp["d_adv"], dp["d_style"], gp["g_adv"], gp.get("ambiguity", zero),
                    acc, ent, torch.sigmoid(logit[:b].float()).mean(), torch.sigmoid(logit[b:].float()).mean()]
            return torch.stack([v.detach().float().to(self.device) for v in vals]).cpu()

    def _g_step(self, fake: torch.Tensor, step: int, real: torch.Tensor | None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        o, b = self.opts, fake.shape[0]
        d = self.d  # the bare module: D is not being trained here, so DDP must not reduce its grads
        d.requires_grad_(False)  # and the weight gradients are not even computed
        x = self._aug(fake, step, 5)
        if real is not None:
            # A BatchNorm D normalises with batch statistics. It was trained on real+fake
            # batches, and an all-fake batch would let it tell fakes apart by the batch
            # statistics alone, so it judges the fakes inside the same mix here.
            x = torch.cat([real, x.to(real.dtype)])
        try:
            with autocast(self.device, self.dtype):
                logit, style = d(x, style=o.ambiguity_weight > 0)
            logit, style = logit[-b:], (style[-b:] if style is not None else None)
            g_loss, gp = generator_loss(logit, style, o.adv_loss, o.ambiguity_weight, o.ambiguity_form)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.scale(g_loss).backward()
            self.scaler.step(self.opt_g)
            self.scaler.update()
        finally:
            d.requires_grad_(True)
        return g_loss, gp

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # Warm-up (as in many GAN codebases) so short runs are not dominated by the random init.
        decay = min(self.opts.ema_decay, (1 + step) / (10 + step))
        src, dst = list(self.g.parameters()), list(self.ema.parameters())
        torch._foreach_lerp_(dst, src, 1 - decay)
        for bd, bs in zip(self.ema.buffers(), self.g.buffers(), strict=True):
            bd.copy_(bs)

    @torch.no_grad()
    def samples(self, z: torch.Tensor) -> torch.Tensor:
        """EMA generator images for fixed noise, in [0, 1], eval-mode BN with fresh statistics."""
        refresh_bn_stats(self.ema, batch=max(16, min(64, len(z))), seed=self.seed)
        self.ema.eval()
        return self.ema.images(z.to(self.device)).contiguous().cpu()

    def state(self, step: int) -> dict[str, Any]:
        cpu = lambda sd: {k: v.detach().cpu().contiguous() for k, v in sd.items()}  # noqa: E731
        refresh_bn_stats(self.ema, seed=self.seed)  # so G_ema in the checkpoint samples well in eval mode
        return {
            "G": cpu(self.g.state_dict()), "D": cpu(self.d.state_dict()), "G_ema": cpu(self.ema.state_dict()),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "model": self.cfg.to_json(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["G"])
        self.d.load_state_dict(state["D"])
        self.ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if self.info.rank:  # rank 0's RNG state was saved; keep the streams per-rank
            torch.manual_seed(self.seed + 1000 * self.info.rank + int(state["step"]))


class StopFlag:
    """First Ctrl-C / SIGTERM asks for a clean stop at the next step; a second one is immediate."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step and saving a checkpoint (again to abort)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread (e.g. a web worker): no signal handling
            pass
        try:
            yield self
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)
