"""trainers.data: layouts and their errors, crop/resize protocols, alignment, determinism, the sampler."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deblurtool.errors import InputError
from trainers.data import PairDataset, ResumableSampler, check_pairs, split_pairs, u8_to_pm1

CROPS = Path(__file__).parent / "data" / "crops"


def write_pair(
    seq: Path, stem: str, sharp_u8: np.ndarray, blur_u8: np.ndarray, blur_dir: str = "blur"
) -> None:
    for name, rgb in ((blur_dir, blur_u8), ("sharp", sharp_u8)):
        (seq / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(seq / name / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def smooth_pair(rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A random smooth RGB image (HxWx3 uint8) and a horizontally motion-blurred copy."""
    h, w = size
    sharp = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8), (w, h), cv2.INTER_CUBIC)
    kernel = np.full((1, 7), 1 / 7, np.float32)
    return sharp, cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_REFLECT)


def make_gopro(root: Path, n_train: int = 6, n_test: int = 2, size: int = 64, seed: int = 0) -> Path:
    """A tiny GOPRO_Large-layout root: ``root/{train,test}/SEQk/{blur,sharp}/NNNNNN.png``."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            sharp, blur = smooth_pair(rng, (size, size))
            write_pair(root / split / f"GOPR{i % 2:04d}", f"{i:06d}", sharp, blur)
    return root


def test_gopro_layout_splits_and_gamma(tmp_path: Path) -> None:
    root = make_gopro(tmp_path / "GOPRO_Large", n_train=5, n_test=3)
    train, test = split_pairs(root, "train"), split_pairs(root, "test")
    assert (len(train.pairs), len(test.pairs)) == (5, 3)
    assert not train.shared and not test.shared
    assert all("/train/" in str(p.blur) and p.blur.parent.name == "blur" for p in train.pairs)
    with pytest.raises(InputError, match="blur_gamma"):
        split_pairs(root, "train", blur="gamma")
    rng = np.random.default_rng(1)
    sharp, blur = smooth_pair(rng)
    write_pair(tmp_path / "g" / "train" / "S", "000001", sharp, blur, blur_dir="blur_gamma")
    gamma = split_pairs(tmp_path / "g", "train", blur="gamma")
    assert [p.blur.parent.name for p in gamma.pairs] == ["blur_gamma"]


def test_missing_split_and_missing_root(tmp_path: Path) -> None:
    root = make_gopro(tmp_path / "only_train", n_test=0)
    with pytest.raises(InputError, match=r"no test/ split folder") as e:
        split_pairs(root, "test")
    assert str(root) in str(e.value)
    with pytest.raises(InputError, match="not found"):
        split_pairs(tmp_path / "nope", "train")


def test_plain_layouts_serve_both_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for i in range(3):
        write_pair(tmp_path / "flat", f"img{i}", *smooth_pair(rng))
        write_pair(tmp_path / "seqs" / f"S{i}", "a", *smooth_pair(rng))
    flat = split_pairs(tmp_path / "flat", "train")
    assert flat.shared and len(flat.pairs) == 3
    assert split_pairs(tmp_path / "flat", "test").pairs == flat.pairs
    assert len(split_pairs(tmp_path / "seqs", "test").pairs) == 3
    crops = split_pairs(CROPS, "train")  # the repository's real crops: SEQ/{blur,sharp}
    assert len(crops.pairs) == 2 and crops.shared


def test_unpaired_file_is_named(tmp_path: Path) -> None:
    root = make_gopro(tmp_path / "r", n_train=2, n_test=1)
    extra = root / "train" / "GOPR0000" / "blur" / "999999.png"
    cv2.imwrite(str(extra), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="no sharp partner") as e:
        split_pairs(root, "train")
    assert "999999.png" in str(e.value)


def test_size_mismatch_and_too_small_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sharp, blur = smooth_pair(rng, (64, 64))
    write_pair(tmp_path / "p", "a", sharp, cv2.resize(blur, (64, 48)))
    pairs = split_pairs(tmp_path / "p", "train").pairs
    with pytest.raises(InputError, match=r"64x48 differs") as e:
        check_pairs(pairs)
    assert "a.png" in str(e.value)
    with pytest.raises(InputError, match="differs"):
        PairDataset(pairs, size=32)[0]
    write_pair(tmp_path / "q", "b", sharp, blur)
    small = split_pairs(tmp_path / "q", "train").pairs
    check_pairs(small, min_size=64)
    with pytest.raises(InputError, match="smaller than the 128-pixel training crop"):
        check_pairs(small, min_size=128)
    with pytest.raises(InputError, match="smaller"):
        PairDataset(small, size=128)[0]


def test_crops_are_aligned_in_range_and_deterministic(tmp_path: Path) -> None:
    """blur = 255 - sharp, so an aligned sample has blur_pm1 == -sharp_pm1 exactly, whatever crop or flip."""
    rng = np.random.default_rng(4)
    for i in range(4):
        sharp, _ = smooth_pair(rng, (48, 80))
        write_pair(tmp_path / "inv", f"{i}", sharp, 255 - sharp)
    ds = PairDataset(split_pairs(tmp_path / "inv", "train").pairs, size=32, seed=7)
    seen = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            blur, sharp = ds[i]
            assert blur.shape == sharp.shape == (3, 32, 32) and blur.dtype == torch.float32
            assert float(sharp.min()) >= -1.0 and float(sharp.max()) <= 1.0
            torch.testing.assert_close(blur, -sharp, rtol=0, atol=1e-6)
            seen.add(sharp.sum().item())
    assert len(seen) > 4  # crops and flips change between epochs
    ds.set_epoch(1)
    again = PairDataset(ds.pairs, size=32, seed=7)
    again.set_epoch(1)
    assert torch.equal(ds[2][1], again[2][1])


def test_crop_tries_prefers_textured_crops_and_stays_aligned(tmp_path: Path) -> None:
    """A frame that is flat but for one textured 32-pixel square: best-of-16 crops hold far more of the
    texture than plain crops; blur = 255 - sharp stays exactly aligned; the choice is deterministic."""
    rng = np.random.default_rng(8)
    sharp = np.full((128, 128, 3), 120, np.uint8)
    sharp[80:112, 16:48] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_pair(tmp_path / "tex", "a", sharp, 255 - sharp)
    pairs = split_pairs(tmp_path / "tex", "train").pairs

    def textured_share(tries: int) -> float:  # mean share of textured pixels in the crops
        ds = PairDataset(pairs, size=32, seed=3, crop_tries=tries)
        hits = 0
        for epoch in range(40):
            ds.set_epoch(epoch)
            blur, crop = ds[0]
            torch.testing.assert_close(blur, -crop, rtol=0, atol=1e-6)
            flat = torch.isclose(crop, torch.full_like(crop, 120 / 127.5 - 1)).all(dim=0)
            hits += 1 - float(flat.float().mean())
        return hits / 40

    plain, best = textured_share(1), textured_share(16)
    assert plain < 0.25 and best > 0.45, (plain, best)  # measured: 0.12 and 0.59
    a, b = (PairDataset(pairs, size=32, seed=3, crop_tries=4) for _ in range(2))
    assert torch.equal(a[0][1], b[0][1])
    with pytest.raises(InputError, match="at least 1"):
        PairDataset(pairs, size=32, crop_tries=0)


def test_resize_protocol_and_centre_crop(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    sharp, blur = smooth_pair(rng, (40, 72))
    write_pair(tmp_path / "p", "a", sharp, blur)
    pairs = split_pairs(tmp_path / "p", "train").pairs
    b, s = PairDataset(pairs, protocol="resize", size=32, augment=False)[0]
    expected = u8_to_pm1(cv2.resize(sharp, (32, 32), interpolation=cv2.INTER_AREA))
    assert torch.equal(s, expected) and b.shape == (3, 32, 32)
    _, s = PairDataset(pairs, protocol="crop", size=32, augment=False)[0]
    assert torch.equal(s, u8_to_pm1(sharp[4:36, 20:52]))
    with pytest.raises(InputError, match="multiple of 4"):
        PairDataset(pairs, size=30)


def test_u8_to_pm1_range() -> None:
    x = u8_to_pm1(np.array([[[0, 255, 128]]], np.uint8))
    assert x.shape == (3, 1, 1)
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_resumable_sampler_skips_and_partitions() -> None:
    data = list(range(11))
    full = ResumableSampler(data, num_replicas=1, rank=0, seed=3)  # type: ignore[arg-type]
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == data and order != data
    full.set_start(4)
    assert list(full) == order[4:] and len(full) == 7
    full.set_epoch(3)
    full.set_start(0)
    assert list(full) != order
    ranks = [ResumableSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]  # type: ignore[arg-type]
    for s in ranks:
        s.set_epoch(2)
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == 6 and set(parts[0]) | set(parts[1]) == set(data)


def test_samples_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    """Crops and flips come from (seed, epoch, index), so 0 or 2 DataLoader workers give the same batches."""
    from torch.utils.data import DataLoader

    root = make_gopro(tmp_path / "r", n_train=4, n_test=0, size=48)
    ds = PairDataset(split_pairs(root, "train").pairs, size=32, seed=1)
    ds.set_epoch(3)
    sampler = ResumableSampler(ds, num_replicas=1, rank=0, seed=1)
    # forkserver, not fork: the test process may have loaded OpenVINO (and its threads) by now.
    batches = [
        list(DataLoader(ds, batch_size=2, sampler=sampler, num_workers=n, multiprocessing_context=ctx))
        for n, ctx in ((0, None), (2, "forkserver"))
    ]
    for (b0, s0), (b2, s2) in zip(*batches, strict=True):
        assert torch.equal(b0, b2) and torch.equal(s0, s2)
