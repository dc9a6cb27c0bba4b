"""Generator weights files: safe to load (safetensors, no pickle, nothing executes), self-describing, checked.

File format (``format_version`` 1): a safetensors file holding the generator's ``state_dict`` (conv weights,
BatchNorm affine parameters and running statistics; ``num_batches_tracked`` is dropped, inference never reads
it), floating-point tensors stored in a compact dtype (fp16 by default: half the size, and far below the
precision an 8- or 16-bit image needs). The header's text metadata holds::

    format          "deblurtool-generator"
    format_version  "1"
    config          JSON of GeneratorConfig.to_dict(), so loading builds the right network without guessing
    ...             any extra strings the writer adds (training step, data, scores)

Where the shipped files live: the repository's top-level ``weights/`` folder, which installs as the package
data of ``deblurtool.weights`` (``pip install .`` and the wheel carry it; found with ``importlib.resources``).

Model card (``weights/README.md``): every file shipped in ``weights/`` is listed on a line of the exact
form ``sha256 <64 lowercase hex>  <filename>`` (two spaces, like ``sha256sum`` output, conventionally inside
a fenced code block). Files in ``weights/`` that the card lists are verified on load, so a corrupt download
or an altered file is refused instead of silently producing bad frames. A user's own ``--weights`` file
elsewhere is not checked.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from deblurtool.errors import WeightsError
from deblurtool.fsutil import write_bytes
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

FORMAT = "deblurtool-generator"
FORMAT_VERSION = "1"
DEFAULT_WEIGHTS_NAME = "deblurtool-resnet9.safetensors"
ENV_WEIGHTS = "DEBLURTOOL_WEIGHTS"
CARD_NAME = "README.md"


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

_RESERVED_KEYS = ("format", "format_version", "config")
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
    """``$DEBLURTOOL_WEIGHTS`` if set, else the shipped ``weights/deblurtool-resnet9.safetensors``.

    Raises WeightsError if that file does not exist: an untrained network would silently return its input.
    """
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"${ENV_WEIGHTS} names a weights file that does not exist", path)
        return path
    path = weights_dir() / DEFAULT_WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(
            "no trained default model is shipped in this installation yet; "
            f"pass --weights PATH (a generator .safetensors file) or set ${ENV_WEIGHTS}",
            path,
        )
    return path


def save_generator(
    model: ResnetGenerator,
    path: Path,
    *,
    dtype: torch.dtype = torch.float16,
    extra: dict[str, str] | None = None,
) -> str:
    """Write ``model``'s weights and config to ``path`` atomically; return the file's sha256 hex.

    Floating tensors are cast to ``dtype`` (fp16 default). The file appears under its final name only when
    complete (temp file in the same folder, then ``os.replace``), so a crash never leaves half a model.
    An existing file at ``path`` is replaced (the trainer refreshes its best model as it improves).
    """
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
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
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


def _config_from_metadata(metadata: dict[str, str], path: Path) -> GeneratorConfig:
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
        return GeneratorConfig.from_dict(raw)
    except (KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"missing or invalid generator config in the metadata ({e})", path) from None


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


def load_generator(path: Path | None = None, *, verify: bool = True) -> ResnetGenerator:
    """Build the generator a weights file describes and load it in float32, eval mode, on the CPU.

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
    config = _config_from_metadata(metadata, path)
    model = ResnetGenerator(config)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith(_SKIPPED_SUFFIX)}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"tensor names do not fit the generator config {config.to_dict()} "
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
