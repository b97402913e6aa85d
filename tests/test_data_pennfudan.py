"""Penn-Fudan download, resume, checksum and conversion, fully offline.

The test builds a tiny archive shaped like PennFudanPed.zip (PNGImages/ + PedMasks/ with instance ids) and
serves it from a local HTTP server on 127.0.0.1 that honours Range requests and can cut a transfer short.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from fpnlab.data import CocoDetection, load_split
from fpnlab.data.pennfudan import convert, download, download_pennfudan, mask_annotations
from fpnlab.errors import DataError

# Per image: (height, width) and each person's xyxy rectangle in the mask (instance k = k-th rectangle).
PEOPLE = {
    "FudanPed00001": ((40, 60), [(5, 3, 15, 30), (30, 10, 50, 38)]),
    "FudanPed00002": ((30, 50), [(0, 0, 10, 12)]),
    "PennPed00001": ((36, 44), [(2, 2, 20, 34), (22, 5, 30, 20), (31, 1, 44, 36)]),
    "PennPed00002": ((32, 32), [(8, 8, 24, 30)]),
}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _archive_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("PennFudanPed/readme.txt", "tiny stand-in for the Penn-Fudan archive")
        for name, ((height, width), people) in PEOPLE.items():
            mask = np.zeros((height, width), dtype=np.uint8)
            for k, (x1, y1, x2, y2) in enumerate(people, start=1):
                mask[y1:y2, x1:x2] = k
            zf.writestr(
                f"PennFudanPed/PNGImages/{name}.png", _png(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
            )
            zf.writestr(f"PennFudanPed/PedMasks/{name}_mask.png", _png(mask))
            zf.writestr(f"PennFudanPed/Annotation/{name}.txt", f"Image filename : {name}.png\n")
    return buffer.getvalue()


ARCHIVE = _archive_bytes()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ARCHIVE; honours `Range: bytes=N-`; sends only `cut` bytes of the next answer when set."""

    ranges: list[str | None] = []
    cut: int | None = None

    def do_GET(self):
        _Handler.ranges.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = ARCHIVE[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(ARCHIVE) - 1}/{len(ARCHIVE)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _Handler.cut is not None:
            body, _Handler.cut = body[: _Handler.cut], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def url():
    _Handler.ranges, _Handler.cut = [], None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/PennFudanPed.zip"
    server.shutdown()
    server.server_close()


def test_interrupted_download_resumes_with_a_range_request(url, tmp_path):
    dest = tmp_path / "PennFudanPed.zip"
    _Handler.cut = 1000
    with pytest.raises(DataError, match="run again to resume") as err:
        download(url, dest, sha256=SHA256, progress=False)
    assert url in str(err.value)
    part = tmp_path / "PennFudanPed.zip.part"
    assert part.stat().st_size == 1000 and not dest.exists()

    assert download(url, dest, sha256=SHA256, progress=False) == SHA256
    assert _Handler.ranges == [None, "bytes=1000-"]
    assert dest.read_bytes() == ARCHIVE and not part.exists()
    assert download(url, dest, sha256=SHA256, progress=False) == SHA256  # already there: no request
    assert len(_Handler.ranges) == 2


def test_checksum_mismatch_deletes_the_file(url, tmp_path):
    dest = tmp_path / "PennFudanPed.zip"
    with pytest.raises(DataError, match=f"has SHA-256 {SHA256}, expected {'0' * 64}") as err:
        download(url, dest, sha256="0" * 64, progress=False)
    assert str(dest) in str(err.value)
    assert list(tmp_path.iterdir()) == []
    assert download(url, dest, sha256=None, progress=False) == SHA256  # None: report, do not verify


def test_file_url_without_range_support_starts_over(tmp_path):
    source = tmp_path / "served.zip"
    source.write_bytes(ARCHIVE)
    dest = tmp_path / "out" / "PennFudanPed.zip"
    dest.parent.mkdir()
    (dest.parent / "PennFudanPed.zip.part").write_bytes(b"stale bytes from another file")
    assert download(source.as_uri(), dest, sha256=SHA256, progress=False) == SHA256
    assert dest.read_bytes() == ARCHIVE


def test_unreachable_url_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="downloading file:///no/such/PennFudanPed.zip failed"):
        download("file:///no/such/PennFudanPed.zip", tmp_path / "x.zip", progress=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 warning
def test_masks_become_boxes_areas_and_rle():
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:7, 3:13] = 1
    mask[10:19, 20:22] = 2
    first, second = mask_annotations(mask)
    assert first["bbox"] == [3.0, 2.0, 10.0, 5.0] and first["area"] == 50.0
    assert second["bbox"] == [20.0, 10.0, 2.0, 9.0] and second["area"] == 18.0
    decoded = mask_utils.decode(
        {"size": second["segmentation"]["size"], "counts": second["segmentation"]["counts"].encode()}
    )
    assert np.array_equal(decoded, (mask == 2).astype(np.uint8))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 warning
def test_download_and_convert_to_coco(url, tmp_path, monkeypatch):
    monkeypatch.setenv("FPNLAB_DATA", str(tmp_path))
    paths, digest = download_pennfudan(url=url, sha256=SHA256, progress=False)
    assert digest == SHA256 and paths.root == tmp_path / "pennfudan" and paths.complete()
    names = sorted(PEOPLE)
    assert sorted(p.stem for p in paths.train_images.iterdir()) == names[:3]  # 30% of 4 -> the last 1 is val
    assert sorted(p.stem for p in paths.val_images.iterdir()) == names[3:]
    assert (paths.train_images / "FudanPed00001.png").read_bytes() == zipfile.ZipFile(io.BytesIO(ARCHIVE)).read(
        "PennFudanPed/PNGImages/FudanPed00001.png"
    )

    train = load_split("pennfudan", "train")
    assert train.categories == ["person"] and train.num_classes == 2
    for idx in range(len(train)):
        name = Path(train.image_info(idx)["file_name"]).stem
        image, target = train[idx]
        (height, width), people = PEOPLE[name]
        assert image.shape == (3, height, width)
        assert target["boxes"].tolist() == [list(map(float, box)) for box in people]
        assert target["area"].tolist() == [float((x2 - x1) * (y2 - y1)) for x1, y1, x2, y2 in people]
    val = CocoDetection(paths.val_images, paths.val_json)
    for ann in val.coco.dataset["annotations"]:
        assert val.coco.annToMask(ann).sum() == ann["area"]


def test_archive_without_masks_is_rejected(tmp_path):
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("PennFudanPed/PNGImages/FudanPed00001.png", _png(np.zeros((4, 4, 3), dtype=np.uint8)))
    with pytest.raises(DataError, match="no mask PennFudanPed/PedMasks/FudanPed00001_mask.png"):
        convert(archive, tmp_path / "out")
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(DataError, match="is not a readable zip archive"):
        convert(tmp_path / "junk.zip", tmp_path / "out")


def test_download_command_line(url, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fpnlab",
            "download",
            "pennfudan",
            "--out",
            str(tmp_path),
            "--url",
            url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"archive SHA-256 {SHA256} (not verified" in result.stdout
    assert f"{tmp_path / 'train'}: 3 images, 6 people" in result.stdout
