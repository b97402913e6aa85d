"""`fpnlab download pennfudan`: download (resuming), check and convert a small real dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fpnlab.commands.common import add_progress
from fpnlab.data.pennfudan import PENNFUDAN_SHA256, PENNFUDAN_URL, download_pennfudan
from fpnlab.data.synthetic import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=["pennfudan"], help="which dataset to download")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the archive and the converted dataset (default: $FPNLAB_DATA/pennfudan, "
        "else ~/.cache/fpnlab/pennfudan)",
    )
    parser.add_argument("--url", default=PENNFUDAN_URL, help="where to download the archive from")
    parser.add_argument(
        "--sha256", default=PENNFUDAN_SHA256, help="expected SHA-256 of the archive (verified if given)"
    )
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    paths, digest = download_pennfudan(args.out, url=args.url, sha256=args.sha256, progress=not args.no_progress)
    check = "verified" if args.sha256 else "not verified: pass --sha256 to check it"
    print(f"archive SHA-256 {digest} ({check})")
    for split in SPLITS:
        data = json.loads(paths.split(split)[1].read_text())
        print(f"{paths.split(split)[0]}: {len(data['images'])} images, {len(data['annotations'])} people")
    return 0
