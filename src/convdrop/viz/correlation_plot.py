"""The figure of ``convdrop correlation``: images with holes, their reconstructions, bars."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch

from convdrop.viz.correlation import METHODS, RECON_TITLES, RECONSTRUCTORS, Study
from convdrop.viz.masks import save_figure

__all__ = ["draw_study"]


_HOLE = torch.tensor([0.9, 0.1, 0.1], dtype=torch.float64)  # colour of dropped units


def _plain(ax: Any, picture: torch.Tensor, title: str, limits: tuple[float, float]) -> Any:
    """Show a (H, W) map in gray, or an (H, W, 3) picture, with a title and no ticks."""
    if picture.dim() == 2:
        shown = ax.imshow(picture.numpy(), cmap="gray", vmin=limits[0], vmax=limits[1],
                          interpolation="nearest")
    else:
        shown = ax.imshow(picture.numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _bars(ax: Any, study: Study) -> None:
    """Grouped bars: recoverable fraction per reconstructor, one bar per method."""
    width, colours = 0.38, {"dropout": "tab:blue", "drop_block": "tab:orange"}
    lowest = 0.0
    for i, (method, title) in enumerate(METHODS.items()):
        stats = [study.summary(method, r) for r in RECONSTRUCTORS]
        xs = [j + (i - 0.5) * width for j in range(len(RECONSTRUCTORS))]
        heights, errors = [100 * m for m, _ in stats], [100 * s for _, s in stats]
        ax.bar(xs, heights, width, yerr=errors, capsize=4, color=colours[method], label=title)
        for x, h, e in zip(xs, heights, errors):
            ax.annotate(f"{h:.0f} %", (x, max(h + e, 0)), xytext=(0, 4),
                        textcoords="offset points", ha="center", fontsize=8)
        lowest = min(lowest, *heights)
    ax.set_xticks(range(len(RECONSTRUCTORS)), [RECON_TITLES[r] for r in RECONSTRUCTORS])
    ax.set_ylim(lowest - 10 if lowest < 0 else 0.0, 112)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("recoverable fraction of the dropped signal (%)", fontsize=9)
    trials = study.scores["dropout", "mean"].numel()
    ax.set_title(f"mean ± std over {trials} trials", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2)


def draw_study(study: Study, out: str | Path, dpi: int = 100) -> Path:
    """PNG: each method's holes and both reconstructions (first trial), and the bar chart."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.5, 7.4), layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.15])
    channel = int(study.x.flatten(1).var(dim=1).argmax())
    x = study.x[channel]
    limits = (float(x.min()), float(x.max()) if float(x.max()) > float(x.min()) else 1.0)
    gray = ((x - limits[0]) / (limits[1] - limits[0])).clamp(0, 1)
    panels = []
    for row, (method, title) in enumerate(METHODS.items()):
        example = study.examples[method]
        mask = example.mask[channel]
        holes = torch.where(mask[..., None], _HOLE, gray[..., None].expand(*gray.shape, 3))
        ax = fig.add_subplot(grid[row, 0])
        _plain(ax, holes, f"{100 * float(mask.double().mean()):.1f} % dropped (red)", limits)
        ax.set_ylabel(title if method == "dropout" else f"{title} (block {study.block_size})")
        for col, recon in enumerate(RECONSTRUCTORS, start=1):
            score = 100 * example.scores[recon]
            panels.append(fig.add_subplot(grid[row, col]))
            shown = _plain(panels[-1], example.reconstructions[recon][channel],
                           f"{RECON_TITLES[recon]}: {score:.0f} % recovered", limits)
    fig.colorbar(shown, ax=panels, shrink=0.6, label="unit value")
    _bars(fig.add_subplot(grid[:, 3]), study)
    shape = "x".join(map(str, study.x.shape))
    where = f", channel {channel}" if study.x.shape[0] > 1 else ""
    fig.suptitle(f"Can the kept neighbours fill the holes? {study.source} {shape}{where}, "
                 f"p = {study.p:g}\nfirst trial of each method (% recovered: over all "
                 "channels' dropped units)", fontsize=11)
    fig.text(0.5, 0.0, textwrap.fill(study.conclusion(), 150), ha="center", va="bottom",
             fontsize=9)
    fig.get_layout_engine().set(h_pad=0.25)
    return save_figure(fig, out, dpi)
