"""The `data:` section of a config: which dataset, where, how it is split; options checked by the dataset's model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vaelab.core.errors import ConfigError
from vaelab.core.registry import UnknownNameError
from vaelab.core.vocab import DATASETS, dataset_options


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("digits", description="dataset name (see `vaelab data list`)")
    path: Path | None = Field(None, description="file or folder the dataset reads")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="held out for validation: a share of native train, else of the whole"
    )
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="held out for test when there is no native test split")
    split_seed: int | None = Field(None, description="seed of the split; defaults to the run seed")
    limit: int | None = Field(None, ge=1, description="keep the first N of each native split (quick runs)")
    options: dict[str, Any] = Field(default_factory=dict, description="dataset options, checked by its options model")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ConfigError(f"data.name: {UnknownNameError('dataset', v, DATASETS.names())}")
        return DATASETS.entry(v).name

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must be < 1 so some data is left to train on")
        dataset_options(self.name, self.options)  # raises ConfigError naming data.options.<key>
        if self.path is not None and DATASETS.entry(self.name).meta.get("reads_path", True) is False:
            raise ConfigError(f"data.path: dataset {self.name!r} reads no file ({self.path} would be ignored); "
                              "remove data.path, or pick a dataset that reads it (vaelab data list)")
        return self
