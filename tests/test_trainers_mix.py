"""Issue-11 training features: several data roots mixed by weight, sharp->sharp samples, scale jitter and
transposes, the frequency and Charbonnier losses, the sharp-input check and the best-epoch rule."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY
from test_trainers_data import make_gopro, smooth_pair, write_pair

from deblurtool.errors import DeblurError, InputError
from deblurtool.evaluate import sharp_input_psnr
from deblurtool.models.generator import ResnetGenerator
from deblurtool.pairs import find_pairs
from trainers.config import TrainConfig
from trainers.data import MixedDataset, PairDataset, build_training_set
from trainers.evaluate import EpochEvaluator
from trainers.losses import frequency_loss, pixel_loss
from trainers.run_files import EpochScores, read_metrics
from trainers.train import train

torch.set_num_threads(1)


def _marked_set(root: Path, value: int, n: int = 3, size: int = 40) -> PairDataset:
    """Pairs whose blurry image is flat ``value`` and whose sharp image is flat ``255 - value``: every sample
    tells which set it came from and whether it was turned into a sharp->sharp pair."""
    for i in range(n):
        flat = np.full((size, size, 3), value, np.uint8)
        write_pair(root, f"{i:06d}", 255 - flat, flat)
    return PairDataset(find_pairs(root), size=32, seed=0)


def _source_of(blur_pm1: torch.Tensor) -> int:
    return round(float((blur_pm1[0, 0, 0] + 1) * 127.5))


def test_mix_draws_each_root_by_weight_and_turns_a_share_sharp(tmp_path: Path) -> None:
    a, b = _marked_set(tmp_path / "a", 10), _marked_set(tmp_path / "b", 60)
    mixed = MixedDataset([a, b], [3.0, 1.0], length=800, sharp_share=0.25, seed=1)
    kinds = Counter()
    for i in range(len(mixed)):
        blur, sharp = mixed[i]
        assert blur.shape == sharp.shape == (3, 32, 32)
        v = _source_of(blur)
        kinds[v] += 1
        if v in (245, 195):  # a sharp->sharp pair: input and target are the same image
            assert torch.equal(blur, sharp)
    assert set(kinds) == {10, 60, 245, 195}
    from_a = kinds[10] + kinds[245]
    assert 0.70 < from_a / 800 < 0.80  # weight 3:1
    assert 0.20 < (kinds[245] + kinds[195]) / 800 < 0.30  # sharp share 0.25


def test_mix_is_deterministic_per_epoch_and_index(tmp_path: Path) -> None:
    a, b = _marked_set(tmp_path / "a", 10), _marked_set(tmp_path / "b", 60)
    mixed = MixedDataset([a, b], [1.0, 1.0], length=50, sharp_share=0.1, seed=3)
    first = [mixed.pick(i)[:3] for i in range(50)]
    assert [mixed.pick(i)[:3] for i in range(50)] == first
    mixed.set_epoch(1)
    assert [mixed.pick(i)[:3] for i in range(50)] != first


def test_mix_rejects_bad_weights(tmp_path: Path) -> None:
    a = _marked_set(tmp_path / "a", 10)
    with pytest.raises(InputError, match="mix weight"):
        MixedDataset([a], [1.0, 2.0], length=4)
    with pytest.raises(InputError, match="positive sum"):
        MixedDataset([a], [0.0], length=4)
    with pytest.raises(DeblurError, match="--mix has 1 weight"):
        TrainConfig(data=("x", "y"), out="o", mix=(1.0,))
    with pytest.raises(DeblurError, match="--sharp-share"):
        TrainConfig(data="x", out="o", sharp_share=1.0)
    with pytest.raises(DeblurError, match="--select test\\+extra needs"):
        TrainConfig(data="x", out="o", select="test+extra")


def test_one_root_keeps_the_plain_epoch_and_a_longer_epoch_samples_with_replacement(tmp_path: Path) -> None:
    root = make_gopro(tmp_path / "g", n_train=6, n_test=1, size=48)
    plain = build_training_set(TrainConfig(data=str(root), out="o", crop=32, batch_size=2))
    assert isinstance(plain.dataset, PairDataset) and len(plain.dataset) == 6
    longer = build_training_set(
        TrainConfig(data=str(root), out="o", crop=32, batch_size=2, steps_per_epoch=10)
    )
    assert isinstance(longer.dataset, MixedDataset) and len(longer.dataset) == 20


def test_scale_jitter_shrinks_real_blur_and_keeps_pairs_aligned(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sharp, blur = smooth_pair(rng, (128, 128))
    write_pair(tmp_path / "p", "000000", sharp, blur)
    pairs = find_pairs(tmp_path / "p")
    plain = PairDataset(pairs, size=32, seed=0)
    jitter = PairDataset(pairs, size=32, seed=0, scale_min=0.25, dihedral=True)
    for i in range(20):
        b, s = jitter.sample(0, np.random.default_rng(i))
        assert b.shape == s.shape == (3, 32, 32)
        # identity sample under jitter: the same crop, scale and orientation for input and target
        bi, si = jitter.sample(0, np.random.default_rng(i), identity=True)
        assert torch.equal(bi, si)
    # shrinking by up to 4x makes the 7-pixel horizontal blur shorter: the pair gets closer on average
    gap = np.mean([float((plain[0][0] - plain[0][1]).abs().mean()) for _ in range(1)])
    gaps = [
        float((b - s).abs().mean())
        for b, s in (jitter.sample(0, np.random.default_rng(i)) for i in range(40))
    ]
    assert np.mean(gaps) < gap
    with pytest.raises(InputError, match="smallest scale"):
        PairDataset(pairs, size=32, scale_min=0.0)


def test_dihedral_gives_all_eight_orientations(tmp_path: Path) -> None:
    img = np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3) % 251
    write_pair(tmp_path / "p", "000000", img.astype(np.uint8), img.astype(np.uint8))
    ds = PairDataset(find_pairs(tmp_path / "p"), size=32, seed=0, dihedral=True)
    seen = {ds.sample(0, np.random.default_rng(i))[1].numpy().tobytes() for i in range(200)}
    assert len(seen) == 8


def test_frequency_and_charbonnier_losses() -> None:
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert frequency_loss(x, x).item() == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    noise = x + 0.05 * torch.randn_like(x)
    assert frequency_loss(blurred, x).item() > 0
    # orthonormal: white noise of sigma s gives about the same mean |coefficient| at any size
    big = torch.zeros(1, 3, 64, 64)
    small = torch.zeros(1, 3, 16, 16)
    a = frequency_loss(big + 0.1 * torch.randn_like(big), big).item()
    b = frequency_loss(small + 0.1 * torch.randn_like(small), small).item()
    assert abs(a - b) / a < 0.15
    assert pixel_loss("charbonnier", x, x).item() == pytest.approx(1e-3)
    assert pixel_loss("charbonnier", noise, x).item() == pytest.approx(
        pixel_loss("l1", noise, x).item(), rel=0.1
    )


def test_sharp_input_psnr_and_the_best_epoch_rule(tmp_path: Path) -> None:
    root = make_gopro(tmp_path / "g", n_train=2, n_test=2, size=48)
    pairs = find_pairs(root / "test")
    assert sharp_input_psnr(pairs, lambda img: img) == [float("inf")] * 2
    shifted = sharp_input_psnr(pairs, lambda img: np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8))
    assert all(35 < p < 40 for p in shifted)
    cfg = TrainConfig(
        data=str(root), out="o", sharp_check=2, eval_extra=(str(root / "test"),), select="test+extra"
    )
    ev = EpochEvaluator(cfg, log=lambda _: None)
    best = {"epoch": 0, "psnr": -float("inf"), "ssim": -float("inf")}
    good = EpochScores(30.0, 0.9, 25.0, 0.8, select_score=0.5, sharp_min_psnr=41.0)
    harmful = EpochScores(31.0, 0.9, 25.0, 0.8, select_score=0.9, sharp_min_psnr=39.9)
    assert ev.is_best(good, best)
    assert not ev.is_best(harmful, best)
    better = {"epoch": 1, "psnr": 30.0, "ssim": 0.9, "score": 0.6}
    assert not ev.is_best(good, better)
    # Compared at full precision: two scores equal to 4 decimals are still ordered (no string round trip).
    assert ev.is_best(replace(good, select_score=0.60004), better)


def test_epoch_scores_run_the_float_model_never_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Precision auto is int8 on a CPU with OpenVINO and NNCF; epochs must be scored (and compared) on the
    float network they trained, not on a model quantised anew each epoch."""
    import deblurtool.inference as inference

    root = make_gopro(tmp_path / "g", n_train=2, n_test=2, size=48)
    seen: list[tuple[str, str]] = []
    real_init = inference.Deblurrer.__init__

    def recording(self: inference.Deblurrer, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        seen.append((self.engine, self.precision))

    monkeypatch.setattr(inference.Deblurrer, "__init__", recording)
    ev = EpochEvaluator(TrainConfig(data=str(root), out="o"), log=lambda _: None)
    ev.evaluate(ResnetGenerator(TINY).eval(), torch.device("cpu"))
    assert seen and all(precision in ("fp32", "bf16") for _, precision in seen)


def test_a_mixed_run_end_to_end(tmp_path: Path) -> None:
    """Two roots, sharp share, jitter, Charbonnier + frequency loss, sharp check and test+extra selection:
    metrics.csv holds the new columns and best.safetensors comes from an eligible epoch."""
    real = make_gopro(tmp_path / "real", n_train=4, n_test=2, size=48)
    synth = make_gopro(tmp_path / "synth", n_train=5, n_test=0, size=48, seed=1) / "train"
    out = tmp_path / "run"
    cfg = TrainConfig(
        data=(str(real), str(synth)), out=str(out), mix=(0.7, 0.3), sharp_share=0.2, scale_min=0.5,
        dihedral=True, ngf=4, n_blocks=1, crop=32, epochs=2, steps_per_epoch=3, batch_size=2, workers=0,
        adv_weight=0.0, perceptual_weight=0.0, pixel_loss="charbonnier", pixel_weight=1.0, freq_weight=0.5,
        precision="fp32", device="cpu", sharp_check=2, sharp_floor=0.0, select="test+extra",
        eval_extra=(str(real / "test"),), log_every=1,
    )  # fmt: skip
    result = train(cfg)
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == ["3", "6"]
    for r in rows:
        assert float(r["g_freq"]) > 0 and r["sharp_min_psnr"] and r["select_score"]
        gain = (
            float(r["psnr"]) - float(r["input_psnr"]) + float(r["extra_psnr"]) - float(r["extra_input_psnr"])
        ) / 2
        assert float(r["select_score"]) == pytest.approx(gain, abs=1e-3)
    assert result.best_epoch in (1, 2) and (out / "best.safetensors").is_file()


def test_layout_script_links_train_and_validation(tmp_path: Path) -> None:
    from conftest import load_script

    module = load_script("layout_gopro_train")
    src = tmp_path / "gopro_train"
    rng = np.random.default_rng(0)
    for i in range(25):
        sharp, blur = smooth_pair(rng, (16, 16))
        write_pair(src / "GOPR0372_07_00", f"{47 + i:06d}", sharp, blur)
    for i in range(2):
        sharp, blur = smooth_pair(rng, (16, 16))
        write_pair(src / "GOPR_UNKNOWN_TRAIN", f"liucmu_{i}", sharp, blur, blur_dir="blur_gamma")
    out = tmp_path / "data"
    assert module.main([str(src), str(out)]) == 0
    train_pairs = find_pairs(out / "gopro_real" / "train" / "GOPR0372_07_00")
    test_pairs = find_pairs(out / "gopro_real" / "test" / "GOPR0372_07_00")
    assert len(train_pairs) == 5 and len(test_pairs) == 20
    assert max(p.name for p in train_pairs) < min(p.name for p in test_pairs)  # the last 20 are held back
    assert len(find_pairs(out / "gopro_gamma" / "train" / "GOPR_UNKNOWN_TRAIN")) == 2
    assert module.main([str(src), str(out)]) == 0  # rerun replaces its own links
    assert all(p.is_symlink() for p in (out / "gopro_real" / "test" / "GOPR0372_07_00" / "blur").iterdir())
