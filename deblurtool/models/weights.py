"""Generator weights files: safe to load (safetensors, no pickle, nothing executes), self-describing, checked.

File format (``format_version`` 1): a safetensors file holding the generator's ``state_dict``
(``num_batches_tracked`` is dropped, inference never reads it), floating-point tensors stored in a compact
dtype (fp16 by default: half the size, and far below the precision an 8- or 16-bit image needs). The
header's text metadata holds::

    format          "deblurtool-generator"
    format_version  "1"
    arch            the architecture's name in ``models.registry`` (absent in older files: a ResNet-9)
    config          JSON of the architecture's config (``to_dict()``), so loading builds the right network
    ...             any extra strings the writer adds (training step, data, scores)

Where the shipped files live: the repository's top-level ``weights/`` folder, which installs as the package
data of ``deblurtool.weights`` (``pip install .`` and the wheel carry it; found with ``importlib.resources``).

Model card (``weights/README.md``): every file shipped in ``weights/`` is listed on a line of the exact
form ``sha256 <64 lowercase hex>  <filename>`` (two spaces, like ``sha256sum`` output, conventionally inside
a fenced code block). Files in ``weights/`` that the card lists are verified on load, so a corrupt download
or an altered file is refused instead of silently producing bad frames. A user's own ``--weights`` file
elsewhere is not checked.

Shipped models are named after their file, ``deblurtool-<name>.safetensors`` (``--model <name>``):
:func:`shipped_models` lists those the card lists, :func:`resolve_model` finds one by name, and
``DEFAULT_MODEL`` names the default (switching the default is that one line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from deblurtool.errors import DeblurError, WeightsError
from deblurtool.fsutil import write_bytes
from deblurtool.models import registry

FORMAT = "deblurtool-generator"
FORMAT_VERSION = "1"
MODEL_PREFIX, MODEL_SUFFIX = "deblurtool-", ".safetensors"
# The shipped model that runs when neither --model nor --weights is given.
DEFAULT_MODEL = "nafunet"
ENV_WEIGHTS = "DEBLURTOOL_WEIGHTS"
CARD_NAME = "README.md"


def model_file_name(name: str) -> str:
    """``"resnet9"`` -> ``"deblurtool-resnet9.safetensors"``: the file a shipped model's name stands for."""
    return f"{MODEL_PREFIX}{name}{MODEL_SUFFIX}"


DEFAULT_WEIGHTS_NAME = model_file_name(DEFAULT_MODEL)


def _shipped_weights_dir() -> Path:
    """The folder of the shipped weights: package data of ``deblurtool.weights`` (the repository's
    ``weights/`` in a checkout or an editable install; ``deblurtool/weights/`` in an installed wheel)."""
    try:
        card = importlib.resources.files("deblurtool.weights").joinpath(CARD_NAME)
    except ModuleNotFoundError:  # run from a source tree that was never installed
        return Path(__file__).resolve().parents[2] / "weights"
    return Path(str(card)).parent


# The folder holding ``weights/``: the repository, or the installed package. A module attribute (not a
# constant folded into functions) so tests can point it at a temporary one.
REPO_ROOT: Path = _shipped_weights_dir().parent

_RESERVED_KEYS = ("format", "format_version", "arch", "config")
_CARD_LINE = re.compile(r"^\s*sha256 ([0-9a-fA-F]{64})  (\S(?:.*\S)?)\s*$")
_SKIPPED_SUFFIX = "num_batches_tracked"


def weights_dir() -> Path:
    """The ``weights/`` folder of shipped models and their card (see ``REPO_ROOT``)."""
    return REPO_ROOT / "weights"


def card_path() -> Path:
    return weights_dir() / CARD_NAME


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weights files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def card_checksums(card: Path) -> dict[str, str]:
    """``{filename: sha256 hex (lowercase)}`` from the card's ``sha256 <hex>  <filename>`` lines.

    Other lines (prose, tables, fences) are ignored. An unreadable card raises WeightsError.
    """
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"cannot read the model card: {e}", card) from None
    sums: dict[str, str] = {}
    for line in text.splitlines():
        m = _CARD_LINE.match(line)
        if m:
            sums[m.group(2)] = m.group(1).lower()
    return sums


def default_weights_path() -> Path:
    """``$DEBLURTOOL_WEIGHTS`` if set, else the shipped default model's file (``DEFAULT_MODEL``).

    Raises WeightsError if that file does not exist: an untrained network would silently return its input.
    """
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"${ENV_WEIGHTS} names a weights file that does not exist", path)
        return path
    path = weights_dir() / model_file_name(DEFAULT_MODEL)
    if not path.is_file():
        raise WeightsError(
            "no trained default model is shipped in this installation yet; "
            f"pass --weights PATH (a generator .safetensors file) or set ${ENV_WEIGHTS}",
            path,
        )
    return path


def save_generator(
    model: nn.Module,
    path: Path,
    *,
    dtype: torch.dtype = torch.float16,
    extra: dict[str, str] | None = None,
) -> str:
    """Write ``model``'s weights, architecture name and config to ``path`` atomically; return the file's
    sha256 hex. ``model`` must be of a registered architecture (``models.registry``).

    Floating tensors are cast to ``dtype`` (fp16 default). The file appears under its final name only when
    complete (temp file in the same folder, then ``os.replace``), so a crash never leaves half a model.
    An existing file at ``path`` is replaced (the trainer refreshes its best model as it improves).
    """
    arch = registry.arch_of(model)
    config: Any = model.config
    extra = dict(extra or {})
    clash = [k for k in extra if k in _RESERVED_KEYS]
    if clash:
        raise ValueError(f"extra metadata may not override {clash}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError("extra metadata keys and values must be strings")
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if name.endswith(_SKIPPED_SUFFIX):
            continue
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous().clone()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata=metadata)  # in memory (tens of MB): written through our own temp file
    write_bytes(path, data, fsync=True)
    return hashlib.sha256(data).hexdigest()


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # the rust parser raises its own error type for any malformed header
        raise WeightsError(f"not a readable safetensors file ({type(e).__name__}: {e})", path) from None
    return metadata, tensors


def _legacy_arch(metadata: dict[str, str]) -> str:
    """The architecture of a file whose metadata names none: a ResNet-9 (files from before ``arch`` was
    stored), unless its config's keys fit exactly one other architecture's config and not the ResNet-9's
    (files a trainer wrote with an older deblurtool loaded)."""
    try:
        keys = set(json.loads(metadata.get("config", "{}")))
    except (ValueError, TypeError):
        return registry.LEGACY_ARCH

    def fits(arch: registry.Arch) -> bool:
        return keys <= {f.name for f in dataclasses.fields(arch.default_config())}

    if fits(registry.get(registry.LEGACY_ARCH)):
        return registry.LEGACY_ARCH
    others = [name for name, arch in registry.ARCHS.items() if fits(arch)]
    return others[0] if len(others) == 1 else registry.LEGACY_ARCH


def _arch_from_metadata(metadata: dict[str, str], path: Path) -> registry.Arch:
    name = metadata["arch"] if "arch" in metadata else _legacy_arch(metadata)
    try:
        return registry.get(name)
    except ValueError as e:
        raise WeightsError(f"{e}: written by a newer deblurtool, or not one of its files", path) from None


def _config_from_metadata(metadata: dict[str, str], arch: registry.Arch, path: Path) -> Any:
    fmt, version = metadata.get("format"), metadata.get("format_version")
    if fmt != FORMAT:
        raise WeightsError(
            f"not a deblurtool generator file (metadata format is {fmt!r}, expected {FORMAT!r})", path
        )
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"unsupported weights format_version {version!r} (this version reads {FORMAT_VERSION})", path
        )
    try:
        raw = json.loads(metadata["config"])
        if not isinstance(raw, dict):
            raise ValueError("config is not a JSON object")
        return arch.from_dict(raw)
    except (KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"missing or invalid {arch.name} config in the metadata ({e})", path) from None


def _verify_against_card(path: Path, *, required: bool) -> None:
    """Check ``path``'s sha256 if it lies in the repo's weights/ folder and the card lists it.

    ``required`` (the shipped default): a missing card entry is itself an error, never a silent pass.
    """
    folder = weights_dir().resolve()
    if path.resolve().parent != folder:
        return
    card = card_path()
    sums = card_checksums(card) if card.is_file() else {}
    expected = sums.get(path.name)
    if expected is None:
        if required:
            raise WeightsError(
                f"the shipped model is not listed in its model card {card} (expected a line "
                f"'sha256 <hex>  {path.name}'); refusing an unverified default "
                "(pass --weights to use it anyway)",
                path,
            )
        return
    actual = file_sha256(path)
    if actual != expected:
        raise WeightsError(
            f"weights file is corrupt or altered: sha256 {actual[:12]}... does not match {expected[:12]}... "
            f"in {card.name}",
            path,
        )


def _refuse_non_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A NaN or infinite value (a damaged file, flipped bits, a diverged training run) would turn every frame
    black or garbage without any error: refuse the file, naming the first such tensor."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise WeightsError(
                f"tensor {name} holds {bad} non-finite value(s) (NaN or infinity): the file is damaged or "
                "comes from a diverged training run",
                path,
            )


def read_metadata(path: Path) -> dict[str, str]:
    """The text metadata of a weights file, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # the rust parser raises its own error type for any malformed header
        raise WeightsError(f"not a readable safetensors file ({type(e).__name__}: {e})", path) from None


def load_generator(path: Path | None = None, *, verify: bool = True) -> nn.Module:
    """Build the generator a weights file describes (its ``arch`` and config) and load it in float32, eval
    mode, on the CPU.

    ``path`` None loads the shipped default (``default_weights_path()``). With ``verify`` files in the repo's
    ``weights/`` folder are checked against the card's sha256 (required for the default). One-line
    WeightsError for: missing file, not safetensors, wrong/missing metadata, names or shapes that do not fit,
    NaN or infinite values.
    """
    is_default = path is None
    path = default_weights_path() if path is None else Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path)
    if verify:
        _verify_against_card(path, required=is_default)
    metadata, tensors = _read_file(path)
    arch = _arch_from_metadata(metadata, path)
    config = _config_from_metadata(metadata, arch, path)
    model = arch.model_cls(config)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith(_SKIPPED_SUFFIX)}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"tensor names do not fit the {arch.name} config {config.to_dict()} "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})",
            path,
        )
    for name, ref in expected.items():
        if tensors[name].shape != ref.shape:
            raise WeightsError(
                f"shape mismatch for {name}: file has {tuple(tensors[name].shape)}, "
                f"config {config.to_dict()} needs {tuple(ref.shape)}",
                path,
            )
    _refuse_non_finite(tensors, path)
    state = {k: (t.float() if t.is_floating_point() else t) for k, t in tensors.items()}
    model.load_state_dict(state, strict=False)  # strict=False only for the dropped num_batches_tracked
    return model.eval()


# -- shipped models ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """One generator shipped in ``weights/`` and listed on the card: ``name`` (``--model NAME``), ``arch``
    (registry name), ``parameters``, ``sha256`` (of the file, as the card lists it), ``path``, ``default``
    (the one run when neither ``--model`` nor ``--weights`` is given)."""

    name: str
    arch: str
    parameters: int
    sha256: str
    path: Path
    default: bool


def _shipped_files() -> dict[str, tuple[Path, str]]:
    """``{name: (path, card sha256)}`` of the card's ``deblurtool-<name>.safetensors`` files that exist."""
    card = card_path()
    sums = card_checksums(card) if card.is_file() else {}
    out: dict[str, tuple[Path, str]] = {}
    for filename, digest in sorted(sums.items()):
        path = weights_dir() / filename
        if filename.startswith(MODEL_PREFIX) and filename.endswith(MODEL_SUFFIX) and path.is_file():
            out[filename[len(MODEL_PREFIX) : -len(MODEL_SUFFIX)]] = (path, digest)
    return out


def shipped_models() -> list[ShippedModel]:
    """The shipped generators, by name (reads each file's metadata and builds its network to count the
    parameters; the tensors are not loaded)."""
    models = []
    for name, (path, digest) in _shipped_files().items():
        metadata = read_metadata(path)
        arch = _arch_from_metadata(metadata, path)
        net = arch.model_cls(_config_from_metadata(metadata, arch, path))
        models.append(
            ShippedModel(
                name=name,
                arch=arch.name,
                parameters=registry.parameter_count(net),
                sha256=digest,
                path=path,
                default=name == DEFAULT_MODEL,
            )
        )
    return models


def resolve_model(name: str) -> Path:
    """The file of the shipped model ``name`` (``--model NAME``); a one-line error listing the known names
    for any other."""
    files = _shipped_files()
    if name not in files:
        known = ", ".join(sorted(files)) or "none are installed"
        raise DeblurError(
            f"--model {name!r} is not a shipped model (known: {known}); see `deblurtool models`"
        )
    return files[name][0]
