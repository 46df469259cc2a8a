"""convdrop.lightning.DropRateCallback in real ``Trainer.fit`` runs on a tiny CPU model:
the ramp, gradient accumulation, and a fit resumed from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import convdrop
from convdrop.lightning import DropRateCallback

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec")


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = convdrop.DropBlock2d(0.2, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.conv(x)).mean(dim=(2, 3)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Recorder(pl.Callback):
    """The module's ``p`` when each batch starts, and an optional stop after some epochs."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.rates: list[float] = []
        self.stop_after = stop_after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(pl_module.drop.p)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.stop_after is not None and trainer.current_epoch + 1 >= self.stop_after:
            trainer.should_stop = True


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 6, 6, generator=generator),
                         torch.randint(0, 2, (16,), generator=generator))
    return DataLoader(data, batch_size=4)  # 4 batches an epoch


def trainer(root: Path, epochs: int, callbacks: list, **options) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root,
                      callbacks=callbacks, **options)


def test_a_two_epoch_fit_ramps_p_over_the_estimated_steps(tmp_path: Path):
    module, recorder = Tiny(), Recorder()
    callback = DropRateCallback("linear")
    trainer(tmp_path, 2, [callback, recorder]).fit(module, loader())
    assert recorder.rates == pytest.approx([0.2 * k / 8 for k in range(8)])
    assert module.drop.p == pytest.approx(0.2)
    assert callback.scheduler.state_dict() == {"step": 8, "total_steps": 8,
                                               "targets": {"drop": 0.2}}


def test_gradient_accumulation_moves_p_once_per_optimizer_step(tmp_path: Path):
    module, recorder = Tiny(), Recorder()
    fit = trainer(tmp_path, 2, [DropRateCallback("linear"), recorder], accumulate_grad_batches=2)
    fit.fit(module, loader())
    assert fit.global_step == 4
    assert recorder.rates == pytest.approx([0.2 * k / 4 for k in (0, 0, 1, 1, 2, 2, 3, 3)])


def test_a_resumed_fit_continues_the_ramp_exactly(tmp_path: Path):
    straight = Recorder()
    trainer(tmp_path / "a", 3, [DropRateCallback("cosine"), straight]).fit(Tiny(), loader())

    first = Recorder(stop_after=2)
    interrupted = trainer(tmp_path / "b", 3, [DropRateCallback("cosine"), first])
    interrupted.fit(Tiny(), loader())
    checkpoint = tmp_path / "b" / "stopped.ckpt"
    interrupted.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=False)["callbacks"]
    assert {"step": 8, "total_steps": 12, "targets": {"drop": 0.2}} in saved.values()

    rest, module = Recorder(), Tiny()
    # Resumed for 4 epochs, this trainer estimates 16 steps; the checkpoint keeps 12, so
    # the ramp is the uninterrupted one and its fourth epoch holds the target.
    resumed = trainer(tmp_path / "b", 4, [DropRateCallback("cosine"), rest])
    resumed.fit(module, loader(), ckpt_path=checkpoint)
    assert len(first.rates) == 8 and len(rest.rates) == 8
    assert (first.rates + rest.rates)[:12] == pytest.approx(straight.rates)
    assert rest.rates[4:] == pytest.approx([0.2] * 4) and module.drop.p == pytest.approx(0.2)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        DropRateCallback("linear", total_steps=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        DropRateCallback("ramp")
    with pytest.raises(ValueError, match="without warmup_steps or options"):
        DropRateCallback(lambda step, total: 1.0, warmup_steps=2)
