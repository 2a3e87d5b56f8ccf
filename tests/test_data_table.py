"""Tables: CSV header detection that never drops a numeric first row, labels, npz keys, bad rows."""
import numpy as np
import pytest
import torch

from vaelab.data import DataConfig, load_data
from vaelab.data.table import detect_header
from vaelab.core.errors import DataError


def _load(path, **options):
    return load_data(DataConfig(name="table", path=path, options=options, val_fraction=0, test_fraction=0), 0)


def test_csv_with_and_without_header_keeps_all_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(326, 8)).astype(np.float32)
    np.savetxt(tmp_path / "plain.csv", x, delimiter=",")
    np.savetxt(tmp_path / "head.csv", x, delimiter=",", header=",".join(f"c{i}" for i in range(8)), comments="")
    for name in ("plain.csv", "head.csv"):
        b = _load(tmp_path / name)
        assert len(b.train) == 326 and b.shape == (8,)
        assert torch.allclose(b.train.x, torch.from_numpy(x), atol=1e-6)


def test_header_detection_rules():
    assert not detect_header([["1", "2"], ["3", "4"]])
    assert detect_header([["a", "b"], ["3", "4"]])
    assert not detect_header([["1", "cat"], ["2", "dog"]])  # a text label column is not a header
    assert detect_header([["x", "label"], ["2", "dog"]])
    assert not detect_header([["1e-3", "-2", "nan"], ["1", "2", "3"]])


def test_forced_header_options(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("1,2\n3,4\n")
    assert len(_load(p).train) == 2
    assert len(_load(p, header=True).train) == 1
    p.write_text("a,b\n3,4\n")
    with pytest.raises(DataError, match="row 0"):
        _load(p, header=False)


def test_label_column_by_name_and_index(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("f1,species,f2\n0.1,cat,0.2\n0.3,dog,0.4\n0.5,cat,0.6\n")
    b = _load(p, label_column="species")
    assert b.shape == (2,) and b.train.y.tolist() == [0, 1, 0] and b.class_names == ["cat", "dog"]
    assert b.num_classes == 2 and b.value_range == (0.0, 1.0)
    q = tmp_path / "n.csv"
    q.write_text("3,1.5,-2\n1,2.5,4\n")
    b = _load(q, label_column=0)
    assert b.train.y.tolist() == [3, 1] and b.train.y.dtype == torch.int64
    assert b.value_range == (-2.0, 4.0)  # observed, not [0,1]
    with pytest.raises(DataError, match="label_column 'nope' not found"):
        _load(p, label_column="nope")


def test_semicolon_delimiter(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a;b\n1;2\n3;4\n")
    assert _load(p, delimiter=";").train.x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("bad", ["nan", "inf", ""])
def test_nan_row_names_file_and_row(tmp_path, bad):
    p = tmp_path / "bad.csv"
    p.write_text(f"a,b\n1,2\n3,4\n5,{bad}\n6,7\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 2 \(line 4\)"):
        _load(p)


def test_nan_in_npy(tmp_path):
    x = np.ones((5, 3))
    x[3, 1] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=r"x\.npy: row 3"):
        _load(tmp_path / "x.npy")


def test_npz_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, feats=np.zeros((4, 2)), target=np.arange(4))
    with pytest.raises(DataError, match=r"d\.npz: no key 'x'.*feats, target"):
        _load(p)
    b = _load(p, x_key="feats", y_key="target")
    assert b.train.y.tolist() == [0, 1, 2, 3]
    assert _load(p, x_key="feats").train.y is None  # default y key is optional
    with pytest.raises(DataError, match=r"d\.npz: no key 'lab'.*feats, target"):
        _load(p, x_key="feats", y_key="lab")


def test_npz_multi_target_y(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 2)), y=np.ones((4, 3)) * 0.5)
    y = _load(p).train.y
    assert y.shape == (4, 3) and y.dtype == torch.float32


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("1")
    with pytest.raises(DataError, match="unsupported"):
        _load(p)
