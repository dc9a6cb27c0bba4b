"""Weights files: round trip, atomic write, metadata and shape checks, card checksums and tamper detection."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from conftest import random_generator
from safetensors.torch import save_file

from deblurtool.errors import DeblurError, WeightsError
from deblurtool.models import weights as W
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

TINY = GeneratorConfig(ngf=4, n_blocks=1)


def _random_model(seed: int = 0, config: GeneratorConfig = TINY) -> ResnetGenerator:
    return random_generator(config, seed, scale=0.2)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary repository root with an empty weights/ folder; $DEBLURTOOL_WEIGHTS unset."""
    (tmp_path / "weights").mkdir()
    monkeypatch.setattr(W, "REPO_ROOT", tmp_path)
    monkeypatch.delenv(W.ENV_WEIGHTS, raising=False)
    return tmp_path


def _write_card(repo: Path, lines: list[str]) -> None:
    text = "# Model card\n\nSome prose.\n\n```\n" + "\n".join(lines) + "\n```\n"
    (repo / "weights" / "README.md").write_text(text, encoding="utf-8")


def test_round_trip_fp32_exact_and_fp16_close(tmp_path: Path) -> None:
    model = _random_model()
    p32, p16 = tmp_path / "a32.safetensors", tmp_path / "a16.safetensors"
    digest = W.save_generator(model, p32, dtype=torch.float32, extra={"step": "123"})
    assert digest == W.file_sha256(p32) and len(digest) == 64
    W.save_generator(model, p16)
    ref = model.state_dict()
    for p, tol in ((p32, 0.0), (p16, 1e-3)):
        loaded = W.load_generator(p)
        assert not loaded.training and loaded.config == TINY
        for k, v in loaded.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, ref[k], atol=tol, rtol=tol)
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_metadata_and_dropped_counters(tmp_path: Path) -> None:
    from safetensors import safe_open

    p = tmp_path / "m.safetensors"
    W.save_generator(_random_model(), p, extra={"psnr": "25.1"})
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
        dtypes = {f.get_tensor(k).dtype for k in keys}
    assert meta["format"] == "deblurtool-generator" and meta["format_version"] == "1"
    assert json.loads(meta["config"]) == TINY.to_dict() and meta["psnr"] == "25.1"
    assert not any(k.endswith("num_batches_tracked") for k in keys)
    assert any(k.endswith("running_mean") for k in keys) and dtypes == {torch.float16}


def test_extra_may_not_override_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        W.save_generator(_random_model(), tmp_path / "x.safetensors", extra={"format": "evil"})
    assert not list(tmp_path.iterdir())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        W.load_generator(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path: Path) -> None:
    p = tmp_path / "garbage.safetensors"
    p.write_bytes(b"\x80\x04this is a pickle, maybe" * 10)
    with pytest.raises(WeightsError, match="safetensors") as e:
        W.load_generator(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        (None, "not a deblurtool generator"),
        ({"format": "other"}, "not a deblurtool generator"),
        ({"format": "deblurtool-generator", "format_version": "9"}, "format_version"),
        ({"format": "deblurtool-generator", "format_version": "1"}, "config"),
        ({"format": "deblurtool-generator", "format_version": "1", "config": "{not json"}, "config"),
        ({"format": "deblurtool-generator", "format_version": "1", "config": '{"ngf": -1}'}, "config"),
    ],
)
def test_bad_metadata(tmp_path: Path, metadata: dict[str, str] | None, match: str) -> None:
    p = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, p, metadata=metadata)
    with pytest.raises(WeightsError, match=match):
        W.load_generator(p)


def test_shape_and_name_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    W.save_generator(_random_model(), p)
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    wider = dict(meta, config=json.dumps(GeneratorConfig(ngf=8, n_blocks=1).to_dict()))
    save_file(tensors, tmp_path / "wide.safetensors", metadata=wider)
    with pytest.raises(WeightsError, match="shape mismatch"):
        W.load_generator(tmp_path / "wide.safetensors")
    deeper = dict(meta, config=json.dumps(GeneratorConfig(ngf=4, n_blocks=2).to_dict()))
    save_file(tensors, tmp_path / "deep.safetensors", metadata=deeper)
    with pytest.raises(WeightsError, match="missing"):
        W.load_generator(tmp_path / "deep.safetensors")


def test_card_checksums_format(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    h1, h2 = "a" * 64, "0123456789ABCDEF" * 4
    card.write_text(
        f"# card\nsha256 {h1}  one.safetensors\n```\nsha256 {h2}  two file.safetensors\n```\n"
        f"sha256 {'b' * 63}  short.safetensors\nsha256 {'c' * 64} one-space.safetensors\n",
        encoding="utf-8",
    )
    assert W.card_checksums(card) == {"one.safetensors": h1, "two file.safetensors": h2.lower()}


def test_default_missing_says_no_model_shipped(repo: Path) -> None:
    with pytest.raises(WeightsError, match="no trained default model") as e:
        W.default_weights_path()
    assert "--weights" in str(e.value)
    with pytest.raises(WeightsError, match="no trained default model"):
        W.load_generator()


def test_default_verified_and_tamper_detected(repo: Path) -> None:
    path = repo / "weights" / W.DEFAULT_WEIGHTS_NAME
    digest = W.save_generator(_random_model(), path)
    # Shipped default without a card entry: refused, never loaded unverified.
    with pytest.raises(WeightsError, match="not listed"):
        W.load_generator()
    _write_card(repo, [f"sha256 {digest}  {W.DEFAULT_WEIGHTS_NAME}"])
    assert W.default_weights_path() == path
    assert W.load_generator().config == TINY
    # Flip one byte near the end (inside tensor data): the card catches it.
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt or altered"):
        W.load_generator()
    with pytest.raises(WeightsError, match="corrupt or altered"):
        W.load_generator(path)  # explicit path inside weights/ listed on the card: also checked
    W.load_generator(path, verify=False)  # the escape hatch still loads


def test_user_file_outside_weights_not_checked(repo: Path, tmp_path: Path) -> None:
    user = tmp_path / "elsewhere" / "mine.safetensors"
    W.save_generator(_random_model(), user)
    _write_card(repo, [f"sha256 {'0' * 64}  mine.safetensors"])  # same name, wrong sum, other folder
    assert W.load_generator(user).config == TINY


def test_env_var_default(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "env.safetensors"
    W.save_generator(_random_model(), user)
    monkeypatch.setenv(W.ENV_WEIGHTS, str(user))
    assert W.default_weights_path() == user
    assert W.load_generator().config == TINY
    monkeypatch.setenv(W.ENV_WEIGHTS, str(tmp_path / "gone.safetensors"))
    with pytest.raises(WeightsError, match="DEBLURTOOL_WEIGHTS"):
        W.default_weights_path()


def test_save_replaces_atomically(tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    W.save_generator(_random_model(0), p)
    d2 = W.save_generator(_random_model(1), p)
    assert W.file_sha256(p) == d2
    assert [q.name for q in tmp_path.iterdir()] == ["m.safetensors"]
    # ordinary permissions, not the 0o600 of the temporary file it was renamed from
    old = os.umask(0o022)
    try:
        W.save_generator(_random_model(2), p)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_shipped_default_model_matches_its_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real weights/ folder: the default file is listed in the card, its sha256 matches, it loads
    verified, and it was trained for some steps (not an init)."""
    monkeypatch.delenv(W.ENV_WEIGHTS, raising=False)
    path = W.default_weights_path()
    assert path.parent == W.weights_dir() and path.name == W.DEFAULT_WEIGHTS_NAME
    assert W.card_checksums(W.card_path())[path.name] == W.file_sha256(path)
    model = W.load_generator()
    from deblurtool.models import registry

    if registry.arch_of(model) == "resnet9":
        assert model.config == GeneratorConfig(ngf=64, n_blocks=9)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert int(meta["step"]) > 0 and meta["format"] == W.FORMAT


def test_shipped_models_are_listed_and_resolved_by_name(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_registry import tiny_nafunet

    weights = repo / "weights"
    d1 = W.save_generator(_random_model(), weights / "deblurtool-resnet9.safetensors")
    d2 = W.save_generator(tiny_nafunet(), weights / "deblurtool-nafunet.safetensors")
    W.save_generator(
        _random_model(), weights / "deblurtool-unlisted.safetensors"
    )  # not on the card: not shipped
    _write_card(
        repo, [f"sha256 {d1}  deblurtool-resnet9.safetensors", f"sha256 {d2}  deblurtool-nafunet.safetensors"]
    )
    models = {m.name: m for m in W.shipped_models()}
    assert sorted(models) == ["nafunet", "resnet9"]
    naf = models["nafunet"]
    assert (
        naf.arch == "nafunet" and naf.sha256 == d2 and naf.path == weights / "deblurtool-nafunet.safetensors"
    )
    assert naf.parameters == sum(p.numel() for p in tiny_nafunet().parameters())
    assert [m.name for m in models.values() if m.default] == [W.DEFAULT_MODEL]  # exactly one default
    assert W.resolve_model("nafunet") == naf.path
    with pytest.raises(
        DeblurError, match=r"--model 'unlisted' is not a shipped model \(known: nafunet, resnet9\)"
    ):
        W.resolve_model("unlisted")
    # The default is one name: switching it switches what runs without --weights.
    monkeypatch.setattr(W, "DEFAULT_MODEL", "nafunet")
    assert W.default_weights_path() == naf.path and type(W.load_generator()).__name__ == "NAFUNet"
    assert [m.name for m in W.shipped_models() if m.default] == ["nafunet"]
    monkeypatch.setattr(W, "DEFAULT_MODEL", "resnet9")
    assert W.default_weights_path() == models["resnet9"].path
    assert type(W.load_generator()).__name__ == "ResnetGenerator"
