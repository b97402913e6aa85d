"""Datasets: the synthetic multi-scale shapes, any COCO-format dataset, and Penn-Fudan pedestrians.

synthetic.py   render_image: deterministic shapes at every scale, a pure function of (seed, split, index)
generate.py    make_dataset: those images written as a COCO dataset folder (`fpnlab make-data`)
coco.py        CocoDetection + collate_fn: (image (3, H, W), target dict) from a COCO JSON
transforms.py  ToTensor, RandomHorizontalFlip, ResizeShorterSide, Compose: boxes move with pixels
catalog.py     shapes_mini() (the shipped sample), load_split(), the data cache
pennfudan.py   download, verify and convert Penn-Fudan to COCO (`fpnlab download pennfudan`)
"""

from fpnlab.data.catalog import DatasetPaths, cache_dir, load_split, shapes_mini
from fpnlab.data.coco import CocoDetection, collate_fn, size_bucket_shares
from fpnlab.data.generate import make_dataset
from fpnlab.data.synthetic import CATEGORIES

__all__ = [
    "CATEGORIES",
    "CocoDetection",
    "DatasetPaths",
    "cache_dir",
    "collate_fn",
    "load_split",
    "make_dataset",
    "shapes_mini",
    "size_bucket_shares",
]
