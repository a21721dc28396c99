"""The DataModule of ``fluidgpt fit``: a canonical dataset, one split of it, one fold.

Its typed ``__init__`` is the ``data`` section of a fit configuration (LightningCLI). It
loads the dataset when built, so that the sizes the model needs (:attr:`contract`: P
particles, T steps, the K conditions, the wall faces) are read from the data and linked into
the model (``apply_on="instantiate"``), never written twice.
"""

from __future__ import annotations

from .casetensors import case_tensors
from .config import ConfigError
from .data import SplitSettings, load_cases
from .datamodule import FluidDataModule

__all__ = ["CaseDataModule"]


class CaseDataModule(FluidDataModule):
    """The cases of one split of a canonical dataset, scaled for a fluidgpt module.

    Args:
        path: a canonical dataset (.zarr, .zarr.zip, .nc); None: the shipped sample.
        conditions: the condition columns fed to the model: "physical" (those that vary and
            change the physics), "all", or a list of names.
        paper_style: replicate every case under inert labels, {condition: [values]}.
        split: the split (one kind: interior, block or random) and its settings.
        fold: train without this fold and validate on it; None: train on every non-test
            case, no validation (what the saved model of ``fluidgpt fit`` is).
        batch_size: cases per batch; None: the module's ``train.batch_size``.
        seed: shuffling seed of the training loader.
    """

    def __init__(self, path: str | None = None,
                 conditions: str | list[str] = "physical",
                 paper_style: dict[str, list[float]] | None = None,
                 split: SplitSettings = SplitSettings(),  # noqa: B008 (frozen)
                 fold: int | None = None,
                 batch_size: int | None = None, seed: int = 0) -> None:
        if split.tune:
            raise ConfigError("data.split.tune is for fluidgpt compare; fit trains on "
                              "data.fold instead")
        ds = load_cases(path, paper_style)
        cases = split.make(ds)
        if fold is not None and not 0 <= fold < cases.n_folds:
            raise ConfigError(f"data.fold must be in [0, {cases.n_folds}) or null, found "
                              f"{fold}")
        super().__init__(case_tensors(ds, conditions), cases, fold, batch_size, 3, seed)
        self.ds, self.settings = ds, split
        self.dataset_name = str(path or "shipped sample")
