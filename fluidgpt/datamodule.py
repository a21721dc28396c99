"""From case tensors and a Split to scaled batches and DataLoaders, per stage.

:class:`FluidDataModule` serves the cases of one split stage (train / val / test) of
:class:`~fluidgpt.casetensors.CaseTensors` as batch dicts scaled by the module's own
scalers, fitted on the training cases only (:meth:`FluidDataModule.fit_scalers`);
:func:`scaled_batch` is that scaling for any cases. The conversion from the dataset is in
:mod:`fluidgpt.casetensors`, the data description a checkpoint carries in
:mod:`fluidgpt.datainfo`.

Shapes: N cases, T steps, P particles, K conditions, faces wall faces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .casetensors import CaseTensors, DataContract
from .data import Split

__all__ = ["FluidDataModule", "scaled_batch"]


class _Cases(torch.utils.data.Dataset):
    def __init__(self, items: dict[str, Tensor]) -> None:
        self.items = items
        self.n = next(iter(items.values())).shape[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.items.items()}


class FluidDataModule(L.LightningDataModule):
    """The cases of one split stage as scaled batch dicts for a fluidgpt module.

    Args:
        data: every case (physical units).
        split: the case split shared by both model stages.
        fold: train on ``split.train(fold)`` and validate on ``split.val(fold)``; None: train
            on every non-test case (``split.trainval``) with no validation set.
        batch_size: cases per batch (None: the module's ``train.batch_size``).
        n_features: the state features the module reads (3 positions, 6 with velocity).
        seed: shuffling seed of the training loader.

    Batches: positions (B, T, P, 3), [velocity], conditions (B, K), valid (B, T, P), scaled
    by the module's scalers (fitted by :meth:`fit_scalers`, which ``setup`` calls when no one
    has: a checkpoint restored afterwards brings its own), and erosion
    (B, faces) in physical units when the data has it (ErosionModule splits it itself).
    """

    def __init__(self, data: CaseTensors, split: Split, fold: int | None = 0,
                 batch_size: int | None = 16, n_features: int = 3, seed: int = 0) -> None:
        super().__init__()
        if split.n_cases != len(data):
            raise ValueError(f"the split is over {split.n_cases} cases, the data holds "
                             f"{len(data)}")
        self.data, self.split, self.fold = data, split, fold
        self.batch_size, self.n_features, self.seed = batch_size, n_features, seed
        self.scalers: Mapping[str, Any] | None = None

    # ----------------------------------------------------------------------- indices
    def indices(self, stage: str) -> np.ndarray:
        """Case indices of "train", "val" (empty without a fold), "test" or "trainval"."""
        if stage == "train":
            return self.split.trainval if self.fold is None else self.split.train(self.fold)
        if stage == "val":
            return np.zeros(0, np.int64) if self.fold is None else self.split.val(self.fold)
        if stage == "test":
            return self.split.test
        if stage == "trainval":
            return self.split.trainval
        raise ValueError(f"stage must be train, val, test or trainval, found {stage!r}")

    def cases(self, stage: str) -> CaseTensors:
        return self.data.subset(self.indices(stage))

    @property
    def contract(self) -> DataContract:
        """What the module must know about these cases (sizes, condition names)."""
        return self.data.contract(self.n_features)

    def setup(self, stage: str) -> None:
        if self.scalers is None:
            self.fit_scalers(self.trainer.lightning_module)

    # ----------------------------------------------------------------------- scaling
    def fit_scalers(self, module: L.LightningModule) -> None:
        """Fit the module's scalers on the training cases only (valid entries only)."""
        train = self.cases("train")
        scalers = module.scalers
        scalers["positions"].fit(train.positions, train.valid)
        if "velocity" in scalers:
            scalers["velocity"].fit(train.velocity, train.valid)
        scalers["conditions"].fit(train.conditions)
        if "log_peak" in scalers:
            if train.erosion is None:
                raise ValueError("an erosion module needs erosion_rate in the dataset")
            module.fit_log_peak(train.erosion)
        if getattr(module, "kind", None) == "erosion" and train.erosion is not None:
            module.fit_output_basis(train.erosion)
        self.scalers = scalers
        if self.batch_size is None:
            self.batch_size = module.train_config.batch_size

    def batch(self, cases: CaseTensors) -> dict[str, Tensor]:
        """Scaled tensors of these cases (one batch dict with N leading)."""
        if self.scalers is None:
            raise RuntimeError("call fit_scalers(module) before asking for batches")
        return scaled_batch(cases, self.scalers, self.n_features)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        items = self.batch(self.cases(stage))
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(_Cases(items), batch_size=self.batch_size, shuffle=shuffle,
                          generator=g if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, in an order set by (seed, epoch) alone, its position kept in the
        checkpoints (a resumed fit retraces the uninterrupted one: :mod:`fluidgpt.resume`)."""
        from .resume import training_loader

        return training_loader(_Cases(self.batch(self.cases("train"))), self.batch_size,
                               self.seed, self.trainer)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.fold is None else self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def scaled_batch(cases: CaseTensors, scalers: Mapping[str, Any],
                 n_features: int = 3) -> dict[str, Tensor]:
    """One batch dict of these cases scaled by ``scalers`` (erosion stays physical)."""
    out = {"positions": scalers["positions"](cases.positions),
           "conditions": scalers["conditions"](cases.conditions),
           "valid": cases.valid}
    if n_features == 6:
        out["velocity"] = scalers["velocity"](cases.velocity)
    if cases.erosion is not None:
        out["erosion"] = cases.erosion
    return out
