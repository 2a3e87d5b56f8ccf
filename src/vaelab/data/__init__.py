"""Datasets by name: `DATASETS`, `DataConfig`, `load_data(cfg, seed) -> DataBundle`, `describe(bundle)`.

One module per source; importing this package registers them all.
"""
from vaelab.data.base import (
    DATASETS,
    ArrayData,
    ArraySplit,
    DataBundle,
    Options,
    Source,
    Split,
    dataset_options,
)
from vaelab.data import amass, cifar, digits, idx, images, pi, table  # noqa: F401  (registers the datasets)
from vaelab.data.amass import axis_angle_to_quat, export_quat_csv, quat_to_axis_angle
from vaelab.data.config import DataConfig, describe, load_data
from vaelab.data.idx import read_idx
from vaelab.data.images import StreamSplit, list_images, load_image
from vaelab.data.pi import load_pi, render_points
from vaelab.data.spec import DataSpec, data_spec

__all__ = [
    "DATASETS",
    "ArrayData",
    "ArraySplit",
    "DataBundle",
    "DataConfig",
    "DataSpec",
    "data_spec",
    "Options",
    "Source",
    "Split",
    "StreamSplit",
    "axis_angle_to_quat",
    "dataset_options",
    "describe",
    "export_quat_csv",
    "list_images",
    "load_data",
    "load_image",
    "load_pi",
    "quat_to_axis_angle",
    "read_idx",
    "render_points",
]
