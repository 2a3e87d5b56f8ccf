"""The data contract: splits, batches, DataConfig, options, the registry entries, describe."""
import numpy as np
import pytest
import torch
from pydantic import BaseModel, ValidationError

from vaelab.data import (
    DATASETS,
    ArrayData,
    ArraySplit,
    DataConfig,
    Split,
    dataset_options,
    describe,
    load_data,
)
from vaelab.core.errors import ConfigError, DataError


def _index_table(tmp_path, n=200):
    """A table whose single column is the row index, so splits can be checked for overlap."""
    p = tmp_path / "idx.npy"
    np.save(p, np.arange(n, dtype=np.float32)[:, None])
    return p


@pytest.mark.parametrize("entry", list(DATASETS.entries()), ids=lambda e: e.name)
def test_every_dataset_has_strict_options_and_doc(entry):
    opts = entry.meta["options"]
    assert issubclass(opts, BaseModel) and opts.model_config.get("extra") == "forbid"
    assert isinstance(entry.meta["doc"], str) and entry.meta["doc"]
    opts()  # every option has a default
    with pytest.raises(ConfigError, match=r"data\.options\.bogus"):
        dataset_options(entry.name, {"bogus": 1})


def test_option_errors_name_the_key_and_suggest():
    with pytest.raises(ConfigError, match=r"data\.options\.scal.*'scale'"):
        dataset_options("mnist", {"scal": "01"})
    with pytest.raises(ConfigError, match=r"data\.options\.scale"):
        dataset_options("mnist", {"scale": "0-1"})
    assert dataset_options("mnist", {"scale": "pm1"}).scale == "pm1"


def test_dataconfig_validates_name_options_and_fractions():
    with pytest.raises(ValidationError, match="Did you mean 'mnist'"):
        DataConfig(name="mnits")
    with pytest.raises(ValidationError, match=r"data\.options\.joint"):
        DataConfig(name="amass", options={"joint": 22})
    with pytest.raises(ValidationError, match="extra"):
        DataConfig(nam="digits")
    with pytest.raises(ValidationError, match="val_fraction"):
        DataConfig(val_fraction=0.6, test_fraction=0.5)
    assert DataConfig().name == "digits"


def test_array_split_batches_cover_every_index_once():
    x = torch.arange(103, dtype=torch.float32)[:, None]
    split = ArraySplit(ArrayData(x, torch.arange(103)))
    assert isinstance(split, Split) and len(split) == 103
    g = torch.Generator().manual_seed(0)
    seen = []
    for xb, yb in split.batches(10, shuffle=True, generator=g):
        assert torch.equal(xb[:, 0].long(), yb)  # x and y stay paired
        seen.append(yb)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(103))
    assert not torch.equal(seen, torch.arange(103))  # actually shuffled
    sizes = [len(xb) for xb, _ in split.batches(10, shuffle=True, generator=g, drop_last=True)]
    assert sizes == [10] * 10
    ordered = torch.cat([xb for xb, _ in split.batches(10, shuffle=False)])
    assert torch.equal(ordered, x)


def test_batches_follow_the_generator():
    split = ArraySplit(ArrayData(torch.arange(50.0)[:, None]))
    a = [xb for xb, _ in split.batches(7, shuffle=True, generator=torch.Generator().manual_seed(3))]
    b = [xb for xb, _ in split.batches(7, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(y is None for _, y in split.batches(7, shuffle=False))


def test_take():
    split = ArraySplit(ArrayData(torch.arange(20.0)[:, None], torch.arange(20)))
    x, y = split.take(5)
    assert x.shape == (5, 1) and y.tolist() == [0, 1, 2, 3, 4]
    assert len(split.take(100)[0]) == 20


def test_seeded_splits_reproducible_and_disjoint(tmp_path):
    cfg = DataConfig(name="table", path=_index_table(tmp_path), val_fraction=0.2, test_fraction=0.1)
    b1, b2, b3 = load_data(cfg, 7), load_data(cfg, 7), load_data(cfg, 8)
    ids = {k: set(s.x[:, 0].long().tolist()) for k, s in b1.splits().items()}
    assert [len(ids[k]) for k in ("train", "val", "test")] == [140, 40, 20]
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == set(range(200))
    assert all(torch.equal(b1.splits()[k].x, b2.splits()[k].x) for k in ids)
    assert not torch.equal(b1.val.x, b3.val.x)
    # split_seed overrides the run seed
    fixed = cfg.model_copy(update={"split_seed": 1})
    assert torch.equal(load_data(fixed, 7).val.x, load_data(fixed, 8).val.x)


def test_zero_fractions_give_no_val_or_test(tmp_path):
    b = load_data(DataConfig(name="table", path=_index_table(tmp_path, 30), val_fraction=0, test_fraction=0), 0)
    assert len(b.train) == 30 and b.val is None and b.test is None


def test_too_small_to_split_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="too few"):
        load_data(DataConfig(name="table", path=_index_table(tmp_path, 1)), 0)


def test_digits_bundle_and_describe():
    b = load_data(DataConfig(name="digits", limit=500), 0)
    assert b.shape == (1, 8, 8) and b.value_range == (0.0, 1.0) and b.num_classes == 10
    assert len(b.train) + len(b.val) + len(b.test) == 500
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert 0.0 <= float(b.train.x.min()) and float(b.train.x.max()) == 1.0
    d = describe(b)
    assert d["shape"] == [1, 8, 8] and d["dtype"] == "float32" and d["value_range"] == [0.0, 1.0]
    assert sum(d["splits"]["train"]["label_counts"].values()) == len(b.train)
    assert {k: v["size"] for k, v in d["splits"].items()} == {"train": 400, "val": 50, "test": 50}


def test_digits_pm1_scale():
    b = load_data(DataConfig(name="digits", options={"scale": "pm1"}), 0)
    assert b.value_range == (-1.0, 1.0)
    assert float(b.train.x.min()) == -1.0 and float(b.train.x.max()) == 1.0


def test_missing_path_is_a_data_error():
    with pytest.raises(DataError, match="data.path is required"):
        load_data(DataConfig(name="mnist"), 0)
