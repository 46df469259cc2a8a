"""``convdrop correlation``: how much of what each method drops can the neighbours give back?

The DropBlock paper's argument (arXiv 1810.12890, section 1): conv feature maps are
spatially correlated, so a unit dropped on its own is largely recoverable from the kept
units around it, and dropout barely removes information; dropping contiguous blocks
does. This module measures that on a real map with two simple reconstructors:

* ``mean``: each dropped unit becomes the mean of the kept units in its 3x3
  neighbourhood (units outside the map do not count); with no kept neighbour, the
  mean of all kept units of that channel.
* ``linear``: per channel, a least-squares fit ``x ~ w . (8 neighbours) + b`` on the
  kept units whose 8 neighbours are all kept and inside the map, applied to every
  dropped unit. Neighbours that are dropped take their ``mean`` estimate, and
  neighbours outside the map copy the nearest edge unit (replicate padding). With
  fewer than 9 fitting rows the ``mean`` estimate is kept.

Score: the recoverable fraction ``1 - sum (x_hat - x)^2 / sum (x - mu)^2`` over the
dropped units, ``mu`` the per-channel mean of the whole map: 1 is perfect recovery, 0 is
no better than knowing the map's mean level, below 0 is worse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convdrop._tables import markdown_table
from convdrop.ops import validate as v
from convdrop.ops.functional import block_mask, dropout

__all__ = [
    "FEATURE_CHANNELS", "METHODS", "RECON_TITLES", "RECONSTRUCTORS", "Example", "Study",
    "correlation_study", "feature_maps", "reconstruct_linear", "reconstruct_mean",
    "recoverability", "render_table",
]

FEATURE_CHANNELS = 8  # output channels of the fixed random 3x3 conv for --source features
FEATURE_SEED = 0  # the conv's weights never change with --seed (which drives the masks)
METHODS = {"dropout": "dropout", "drop_block": "DropBlock"}
_MIN_ROWS = 9  # one per fitted parameter (8 weights and a bias)
_NEIGHBOURS = [0, 1, 2, 3, 5, 6, 7, 8]  # the 3x3 window without its centre


def feature_maps(image: torch.Tensor, channels: int = FEATURE_CHANNELS) -> torch.Tensor:
    """ReLU of a fixed random 3x3 conv (seed ``FEATURE_SEED``, zero bias, zero padding).

    Args:
        image (Tensor[C, H, W]).

    Returns:
        Tensor[channels, H, W]: a stand-in for a first conv layer's feature maps.
    """
    gen = torch.Generator().manual_seed(FEATURE_SEED)
    weight = torch.randn(channels, image.shape[0], 3, 3, generator=gen) / (3 * image.shape[0])
    return F.relu(F.conv2d(image[None].float(), weight, padding=1))[0]


def _maps(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) float64 and bool views of ``x`` and ``mask`` given as (H, W) or (C, H, W)."""
    if x.shape != mask.shape or x.dim() not in (2, 3):
        raise ValueError(f"x and mask must share a (H, W) or (C, H, W) shape, got "
                         f"{tuple(x.shape)} and {tuple(mask.shape)}")
    x3, m3 = (x[None], mask[None]) if x.dim() == 2 else (x, mask)
    return x3.double(), m3.bool()


def _window_sum(t: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C, H, W): sum over each 3x3 window, zero outside the map."""
    kernel = torch.ones(1, 1, 3, 3, dtype=t.dtype)
    return F.conv2d(t[:, None], kernel, padding=1)[:, 0]


def reconstruct_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill dropped units with the mean of their kept 3x3 neighbours (module docstring).

    Args:
        x (Tensor[C, H, W] | Tensor[H, W]): the map before dropping.
        mask (Tensor[bool] like ``x``): True where dropped; only kept values are read.

    Returns:
        float64 tensor like ``x``: kept units unchanged, dropped ones estimated.
    """
    xd, m = _maps(x, mask)
    kept = (~m).double()
    total, count = _window_sum(xd * kept), _window_sum(kept)
    channel_mean = (xd * kept).sum((1, 2)) / kept.sum((1, 2)).clamp_min(1.0)
    estimate = torch.where(count > 0, total / count.clamp_min(1.0), channel_mean[:, None, None])
    return torch.where(m, estimate, xd).reshape(x.shape)


def reconstruct_linear(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill dropped units with a per-channel least-squares fit on the 8 neighbours.

    Args and returns as ``reconstruct_mean``; see the module docstring for the fit.
    """
    xd, m = _maps(x, mask)
    filled = reconstruct_mean(xd, m)
    padded = F.pad(filled[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    windows = padded.unfold(1, 3, 1).unfold(2, 3, 1).flatten(-2)  # (C, H, W, 9)
    features = torch.cat([windows[..., _NEIGHBOURS], torch.ones_like(filled)[..., None]], -1)
    whole = _window_sum((~m).double()) == 9  # the unit and its 8 neighbours kept, in the map
    out = filled.clone()
    for c in range(xd.shape[0]):
        rows = whole[c]
        if int(rows.sum()) < _MIN_ROWS or not m[c].any():
            continue
        weights = torch.linalg.lstsq(features[c][rows], xd[c][rows][:, None]).solution
        out[c][m[c]] = (features[c][m[c]] @ weights)[:, 0]
    return out.reshape(x.shape)


RECONSTRUCTORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": reconstruct_mean,
    "linear": reconstruct_linear,
}
RECON_TITLES = {"mean": "neighbour mean", "linear": "3x3 linear fit"}


def recoverability(x: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> float:
    """Recoverable fraction of the dropped signal, ``1 - SSE / SS`` over dropped units.

    ``SS`` is taken around each channel's mean over the whole map. NaN when nothing is
    dropped; when the dropped units carry no signal (SS ~ 0), 1.0 if they are recovered
    exactly and -inf otherwise.
    """
    if method not in RECONSTRUCTORS:
        raise ValueError(f"method must be one of {', '.join(RECONSTRUCTORS)}, got {method!r}")
    xd, m = _maps(x, mask)
    if not m.any():
        return math.nan
    error = float(((RECONSTRUCTORS[method](xd, m) - xd)[m] ** 2).sum())
    signal = float(((xd - xd.mean((1, 2), keepdim=True))[m] ** 2).sum())
    scale = 1e-12 * (float((xd[m] ** 2).sum()) + 1e-300)
    if signal <= scale:
        return 1.0 if error <= scale else -math.inf
    return 1.0 - error / signal


@dataclass(frozen=True)
class Example:
    """The first trial of one method, for the figure."""

    mask: torch.Tensor  # (C, H, W) bool, True = dropped
    reconstructions: dict[str, torch.Tensor]  # reconstructor -> (C, H, W) float64
    scores: dict[str, float]  # reconstructor -> recoverable fraction of this trial


@dataclass(frozen=True)
class Study:
    """Dropout vs DropBlock at the same ``p`` on one map, over ``trials`` seeded masks."""

    x: torch.Tensor  # (C, H, W) the map units are dropped from
    source: str  # "image" or "features"
    p: float  # drop probability of both methods
    block_size: int  # DropBlock's block side
    seed: int  # seed of the mask generator
    scores: dict[tuple[str, str], torch.Tensor]  # (method, reconstructor) -> (trials,)
    dropped: dict[str, torch.Tensor]  # method -> (trials,) fraction of units dropped
    examples: dict[str, Example]  # method -> its first trial

    def scored(self, method: str) -> int:
        """Trials in which ``method`` dropped something (the others score NaN)."""
        return int((~self.scores[method, "mean"].isnan()).sum())

    def summary(self, method: str, reconstructor: str) -> tuple[float, float]:
        """Mean and standard deviation (0 for one trial) over the scored trials."""
        values = self.scores[method, reconstructor]
        values = values[~values.isnan()]
        if values.numel() == 0:
            return math.nan, math.nan
        return float(values.mean()), float(values.std()) if values.numel() > 1 else 0.0

    def best(self, method: str) -> tuple[str, float, float]:
        """(reconstructor, mean, std) of the reconstructor that recovers most on average."""
        name = max(RECONSTRUCTORS, key=lambda r: _or_low(self.summary(method, r)[0]))
        return (name, *self.summary(method, name))

    def conclusion(self) -> str:
        """One line comparing the methods, computed from the numbers."""
        (rd, d, sd), (rb, b, sb) = self.best("dropout"), self.best("drop_block")
        n_d, n_b = self.scored("dropout"), self.scored("drop_block")
        if not n_d or not n_b:
            return "nothing was dropped in any trial of at least one method: no comparison."
        margin = 2 * math.sqrt(sd**2 / n_d + sb**2 / n_b)  # two standard errors of d - b
        if d - b > margin:
            verdict = "DropBlock's holes are much harder to fill at the same p"
        elif b - d > margin:
            verdict = "here DropBlock's holes are the easier ones to fill"
        else:
            verdict = "no clear difference at this p and block size"
        return (f"dropout's dropped units are {_pct(d)} % recoverable from their neighbours "
                f"({RECON_TITLES[rd]}), DropBlock's {_pct(b)} % ({RECON_TITLES[rb]}): "
                f"{verdict}.")


def _pct(fraction: float) -> str:
    return f"{round(100 * fraction) + 0}"  # + 0 turns -0 into 0


def _or_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _trial_masks(shape: tuple[int, ...], p: float, block_size: int,
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
    ones = torch.ones((1, *shape))
    return {"dropout": dropout(ones, p, generator=gen)[0] == 0,
            "drop_block": block_mask((1, *shape), p, block_size, generator=gen)[0]}


def correlation_study(image: torch.Tensor, p: float, block_size: int, trials: int, seed: int,
                      *, source: str = "image") -> Study:
    """Score both reconstructors on dropout and DropBlock masks (``trials`` of each).

    Args:
        image (Tensor[C, H, W]): the image; with ``source="features"`` its
            ``feature_maps`` are used instead.
    """
    p, block = v.check_p(p), v.check_positive_int(block_size, "block_size")
    trials = v.check_positive_int(trials, "trials")
    if source not in ("image", "features"):
        raise ValueError(f"source must be 'image' or 'features', got {source!r}")
    x = (feature_maps(image) if source == "features" else image).double()
    gen = torch.Generator().manual_seed(seed)
    scores = {(m, r): torch.empty(trials, dtype=torch.float64)
              for m in METHODS for r in RECONSTRUCTORS}
    dropped = {m: torch.empty(trials, dtype=torch.float64) for m in METHODS}
    examples = {}
    for trial in range(trials):
        for method, mask in _trial_masks(tuple(x.shape), p, block, gen).items():
            dropped[method][trial] = mask.double().mean()
            for recon in RECONSTRUCTORS:
                scores[method, recon][trial] = recoverability(x, mask, recon)
            if trial == 0:
                examples[method] = Example(
                    mask, {r: f(x, mask) for r, f in RECONSTRUCTORS.items()},
                    {r: float(scores[method, r][0]) for r in RECONSTRUCTORS})
    return Study(x, source, p, block, seed, scores, dropped, examples)


def render_table(study: Study) -> str:
    """Markdown: method x reconstructor, recoverable fraction mean ± std over trials."""
    trials = study.scores["dropout", "mean"].numel()
    header = ["method", "dropped", *(RECON_TITLES[r] for r in RECONSTRUCTORS)]
    rows = []
    for method, title in METHODS.items():
        cells = [f"{100 * m:.1f} ± {100 * s:.1f} %"
                 for m, s in (study.summary(method, r) for r in RECONSTRUCTORS)]
        name = title if method == "dropout" else f"{title} (block {study.block_size})"
        rows.append([name, f"{100 * float(study.dropped[method].mean()):.1f} %", *cells])
    lines = [f"Recoverable fraction of the dropped units ({study.source}, "
             f"{tuple(study.x.shape)}, p = {study.p:g}, block {study.block_size}, "
             f"mean ± std over {trials} trials, seed {study.seed})", "",
             markdown_table(header, rows)]
    skipped = {m: trials - study.scored(m) for m in METHODS}
    lines += [f"\n{METHODS[m]} dropped nothing in {k} of {trials} trials; they are left out."
              for m, k in skipped.items() if k]
    return "\n".join(lines) + "\n"
