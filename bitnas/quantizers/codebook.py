"""A universal codebook (VQ4ALL-style): every layer of every network indexes one shared table
of d-dim codewords, held once (in ROM) however many layers and networks use it.

Quantizing a weight ``w`` (row 0 = output channel; a 1-D or scalar tensor is one row):
each row is flattened and divided by its RMS (the row's scale, stored with ``scale_bits``),
cut into sub-vectors of ``d`` consecutive elements (the last one zero-padded), and each
sub-vector is replaced by its nearest codeword (squared distance over the real positions
only: padding never sways the choice). At ``w_bits = b`` a layer uses the FIRST 2^b
codewords, so the sets are nested and the error cannot grow with more bits. The
dequantized weight is scale * codeword, the padding cropped; the codewords are float16
values, used exactly (cast to ``w``'s dtype). Storage: b bits per sub-vector, one scale
per row, and the whole codebook (K x d x 16 bits) as a ``shared`` structure; compute: a
lookup, then a multiply-accumulate on the 16-bit value looked up.

Building a codebook, as the paper (VQ4ALL) does: sub-vectors are sampled in equal numbers
from every source network, a Gaussian kernel density estimate (scipy's ``gaussian_kde``,
Scott's factor) is fitted to them, and K = 2^B codewords are drawn from it, kept in draw
order (so any prefix of 2^b codewords is itself a sample of the KDE). Post-training (PTQ),
each sub-vector takes its nearest codeword (hard assignment). Fine-tuning (QAT) has two
modes (option ``assign``): ``hard`` trains the float weights through the nearest assignment
with a straight-through gradient; ``soft`` is the paper's: each sub-vector keeps its
``top_n`` nearest codewords with learnable ratios, frozen progressively into hard choices
(:class:`SoftAssignment`). Where this differs from the paper: the fine-tuning loss is the
task loss alone (the paper adds distillation from the float model), and the per-row RMS
normalisation (one codebook for layers of any scale), the nested prefixes for several index
widths and the built-in Gaussian codebook are this module's choices, not the paper's.

The built-in codebook (option ``path = ""``) needs no network: 2^12 codewords of dimension
``dim`` (4 unless given) drawn from a standard normal by a ``torch.Generator`` seeded with
option ``seed``, the distribution RMS-normalised weights roughly follow.

File format: a ``.npz`` (written atomically, read with ``allow_pickle=False``) holding
``codewords`` [K, d] float16 (K a power of two), ``dim``, ``sources`` (1-D str: the
networks it was built from), ``samples_per_source`` (1-D int, one count per source),
``seed`` and ``bandwidth`` (the KDE factor used).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.base import Quantizer, numel
from bitnas.registry import QUANTIZERS

#: index bits and sub-vector dimension of the built-in Gaussian codebook
BUILTIN_BITS = 12
BUILTIN_DIM = 4
#: most index bits a codebook may have (2^16 codewords)
MAX_BITS = 16
#: bits of one stored codeword element (float16)
CODEWORD_BITS = 16
#: the widest codeword (a sub-vector of 64 weights)
MAX_DIM = 64
_KEYS = ("codewords", "dim", "sources", "samples_per_source", "seed", "bandwidth")
_REBUILD = "rebuild it with `bitnas codebook build SOURCE ... --out FILE`"


@dataclass(frozen=True, eq=False)
class Codebook:
    """K = 2^B codewords of dimension d (float16, read-only) and how they were made."""

    codewords: np.ndarray
    sources: tuple[str, ...] = ()
    samples_per_source: tuple[int, ...] = ()
    seed: int = 0
    bandwidth: float = 0.0
    #: where it was read from, or a description of the built-in one (for messages)
    origin: str = ""

    @property
    def size(self) -> int:
        return int(self.codewords.shape[0])

    @property
    def dim(self) -> int:
        return int(self.codewords.shape[1])

    @property
    def index_bits(self) -> int:
        """B: the widest index the codebook serves (K = 2^B)."""
        return self.size.bit_length() - 1

    @functools.cached_property
    def key(self) -> str:
        """The first 16 hex digits of the sha256 of the codeword bytes (little-endian float16)."""
        return hashlib.sha256(np.ascontiguousarray(self.codewords, dtype="<f2").tobytes()).hexdigest()[:16]

    @functools.cached_property
    def tensor(self) -> Tensor:
        """The codewords as a float16 tensor (a private copy: the array is read-only)."""
        return torch.from_numpy(self.codewords.copy())

    @property
    def rom_bits(self) -> int:
        return self.size * self.dim * CODEWORD_BITS


def _check_codewords(cw: np.ndarray, where: str) -> None:
    if cw.ndim != 2 or cw.dtype != np.float16 or cw.shape[1] < 1:
        raise BitnasError(f"{where}: codewords must be a [K, d] float16 array, got {cw.dtype} {cw.shape}")
    k = cw.shape[0]
    if k < 2 or k & (k - 1) or k > 2**MAX_BITS:
        raise BitnasError(f"{where}: holds {k} codewords, not a power of two in 2..{2**MAX_BITS}")
    if not np.isfinite(cw).all():
        raise BitnasError(f"{where}: holds non-finite codewords")


def save_codebook(book: Codebook, path: str | os.PathLike) -> Path:
    """Write ``book`` to ``path`` (.npz) through a temporary file in the same directory and
    ``os.replace``: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    _check_codewords(book.codewords, f"codebook for {path}")
    if len(book.sources) != len(book.samples_per_source):
        raise BitnasError(f"codebook for {path}: one sample count per source is needed")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, codewords=book.codewords, dim=np.int64(book.dim),
                     sources=np.array(book.sources, dtype=str),
                     samples_per_source=np.array(book.samples_per_source, dtype=np.int64),
                     seed=np.int64(book.seed), bandwidth=np.float64(book.bandwidth))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_codebook(path: str | os.PathLike) -> Codebook:
    """The codebook in ``path``, cached on (resolved path, mtime, size); one-line errors
    name the file and how to fix it."""
    p = Path(path).expanduser()
    try:
        st = p.resolve().stat()
    except OSError:
        raise BitnasError(f"codebook file {p} does not exist; build one with `bitnas codebook build "
                          f"SOURCE ... --out {p}`, or leave option path empty for the built-in "
                          "Gaussian codebook") from None
    if not p.is_file():
        raise BitnasError(f"codebook file {p} is not a file; pass the .npz that `bitnas codebook build` "
                          "writes")
    return _read_codebook(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_codebook(path: str, mtime_ns: int, size: int) -> Codebook:
    where = f"codebook file {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise BitnasError(f"{where} lacks {', '.join(missing)}; {_REBUILD}")
            a = {k: z[k] for k in _KEYS}
    except BitnasError:
        raise
    except Exception as e:  # truncated, not a zip, pickled objects, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise BitnasError(f"{where} cannot be read ({first}); {_REBUILD}") from None
    cw = a["codewords"]
    _check_codewords(cw, f"{where} ({_REBUILD})")
    sources, counts = a["sources"], a["samples_per_source"]
    if (a["dim"].shape != () or int(a["dim"]) != cw.shape[1] or sources.ndim != 1
            or sources.dtype.kind != "U" or counts.ndim != 1 or counts.dtype.kind not in "iu"
            or len(counts) != len(sources) or a["seed"].shape != () or a["bandwidth"].shape != ()):
        raise BitnasError(f"{where} has inconsistent contents (dim, sources, samples_per_source, "
                          f"seed or bandwidth); {_REBUILD}")
    cw.setflags(write=False)
    return Codebook(cw, tuple(str(s) for s in sources), tuple(int(c) for c in counts),
                    int(a["seed"]), float(a["bandwidth"]), origin=path)


@functools.lru_cache(maxsize=8)
def builtin_codebook(dim: int = BUILTIN_DIM, seed: int = 0) -> Codebook:
    """2^12 codewords of dimension ``dim`` drawn from a standard normal (float16) by a
    ``torch.Generator`` seeded with ``seed``: the codebook of RMS-normalised weights that
    needs no network."""
    g = torch.Generator().manual_seed(seed)
    cw = torch.randn(2**BUILTIN_BITS, dim, generator=g).to(torch.float16).numpy()
    cw.setflags(write=False)
    return Codebook(cw, seed=seed, origin=f"built-in (Gaussian, d={dim}, seed {seed})")


def _rows(w: Tensor) -> Tensor:
    """``w`` as [rows, row_len]: row 0 the output channel; a 1-D or scalar tensor is one row."""
    return w.reshape(w.shape[0] if w.dim() >= 2 else 1, -1)


def weight_tensors(state_dict: Mapping[str, object]) -> dict[str, Tensor]:
    """The convolution and linear weights of a state dict: floating tensors of dimension
    >= 2 whose key ends with ``weight`` (BatchNorm and other 1-D tensors are left out)."""
    return {k: v for k, v in state_dict.items() if isinstance(v, Tensor) and k.endswith("weight")
            and v.dim() >= 2 and v.is_floating_point()}


def sub_vectors(w: Tensor, dim: int) -> np.ndarray:
    """[n, dim] float64: the full ``dim``-element sub-vectors of ``w``'s rows, each row
    divided by its RMS; padded tail sub-vectors and all-zero rows (nothing to code) dropped."""
    rows = _rows(w.detach().cpu().to(torch.float64))
    rows = rows[rows.pow(2).mean(dim=1) > 0]
    full = rows.shape[1] // dim * dim
    x = rows / rows.pow(2).mean(dim=1, keepdim=True).sqrt()
    return x[:, :full].reshape(-1, dim).numpy()


def build_codebook(state_dicts: Mapping[str, Mapping[str, Tensor]], *, dim: int = BUILTIN_DIM,
                   bits: int = BUILTIN_BITS, per_source: int = 20000, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> Codebook:
    """A codebook of 2^``bits`` codewords of dimension ``dim`` for the networks
    ``state_dicts`` (name -> state dict): ``per_source`` sub-vectors sampled uniformly without
    replacement from each network's weights (:func:`weight_tensors`, :func:`sub_vectors`),
    a Gaussian KDE (Scott's factor) fitted to them all, and the codewords drawn from it in
    draw order. ``log`` gets one line per source. Deterministic for a given ``seed``."""
    from scipy.stats import gaussian_kde

    if not 1 <= bits <= MAX_BITS:
        raise BitnasError(f"codebook bits must be 1..{MAX_BITS}, got {bits}")
    if not 1 <= dim <= MAX_DIM:
        raise BitnasError(f"codebook dim must be 1..{MAX_DIM}, got {dim}")
    if per_source < 1:
        raise BitnasError(f"samples per source must be at least 1, got {per_source}")
    if seed < 0:
        raise BitnasError(f"codebook seed must be non-negative, got {seed}")
    if not state_dicts:
        raise BitnasError("no source networks to build a codebook from")
    rng = np.random.default_rng(seed)
    samples = []
    for name, state in state_dicts.items():
        tensors = weight_tensors(state)
        if not tensors:
            raise BitnasError(f"{name} holds no convolution or linear weights (tensors of dimension "
                              ">= 2 whose name ends with 'weight'); pass a trained model's state dict")
        vecs = np.concatenate([sub_vectors(t, dim) for t in tensors.values()])
        if len(vecs) < per_source:
            raise BitnasError(f"{name} has {len(vecs)} sub-vectors of dimension {dim}, fewer than the "
                              f"{per_source} to sample from every source; lower --per-source")
        samples.append(vecs[rng.choice(len(vecs), per_source, replace=False)])
        if log:
            log(f"{name}: {len(tensors)} weight tensors, {len(vecs)} sub-vectors available, "
                f"{per_source} sampled")
    data = np.concatenate(samples)
    try:
        kde = gaussian_kde(data.T)
    except (np.linalg.LinAlgError, ValueError):
        raise BitnasError(f"the {len(data)} sampled sub-vectors of dimension {dim} have a singular "
                          "covariance (too few samples, or all alike), so no Gaussian KDE fits them; "
                          "sample more (--per-source, more sources) or lower --dim") from None
    cw = kde.resample(2**bits, seed=rng).T.astype(np.float16)
    if not np.isfinite(cw).all():
        raise BitnasError("codewords drawn from the KDE overflow float16; the source weights are "
                          "not usable (check them for huge or non-finite values)")
    return Codebook(cw, tuple(state_dicts), (per_source,) * len(state_dicts), seed, float(kde.factor))


def load_sources(paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, Tensor]]:
    """State dicts by file name: each path is a cached model (a torch file holding
    ``state_dict``, or a bare state dict) or a run directory (its ``fp_cache/*.pt``,
    training checkpoints ``*.ckpt.pt`` left out)."""
    files: list[Path] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in (p / "fp_cache").glob("*.pt") if not f.name.endswith(".ckpt.pt"))
            if not found:
                raise BitnasError(f"run directory {p} has no cached models (fp_cache/*.pt); run a "
                                  "search first or pass model files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise BitnasError(f"source {p} does not exist; pass cached model files (*.pt) or run directories")
    out: dict[str, dict[str, Tensor]] = {}
    for f in files:
        try:
            blob = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, truncated, pickled objects
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise BitnasError(f"source {f} is not a torch file bitnas can read ({first}); pass a "
                              "cached model (fp_cache/*.pt)") from None
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
        if not isinstance(state, dict):
            raise BitnasError(f"source {f} holds no state dict; pass a cached model (fp_cache/*.pt)")
        out[str(f)] = state
    return out


def _nearest(x: Tensor, cw: Tensor, c2: Tensor) -> Tensor:
    """Per row of ``x`` [N, d], the index of the codeword minimising |c|^2 - 2 x.c (the squared
    distance less |x|^2, the same for every c; ``c2`` holds the |c|^2 to use), in chunks."""
    step = max(1, 2**24 // cw.shape[0])
    parts = [torch.addmm(c2, x[i:i + step], cw.T, alpha=-2).argmin(dim=1) for i in range(0, len(x), step)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=x.device)


class SoftAssignment(torch.nn.Module):
    """VQ4ALL's fine-tuning mode for one weight: each sub-vector keeps its ``top_n`` nearest
    codewords (among the first 2^b) with learnable ratios (softmax of logits, started at
    minus the squared distance over the mean nearest distance), and the weight is their
    ratio-weighted sum times the row's scale. ``anneal(p)`` freezes progressively: after each
    epoch the share p of sub-vectors whose largest ratio is highest are fixed to that
    codeword, so that at the end every sub-vector is one codeword again. In ``eval`` mode
    the weight is always hard (each sub-vector's highest-ratio codeword), which is what is
    stored and deployed. The codebook itself stays fixed, as in the paper."""

    #: the ratios' logits are of order 1 where weights are of order 0.1: they learn at this
    #: multiple of the fine-tuning rate (an estimate, not the paper's setting)
    lr_scale = 100.0

    def __init__(self, quantizer: CodebookQuantizer, w: Tensor, bits: int, top_n: int) -> None:
        super().__init__()
        quantizer._check(bits)
        d = quantizer.book.dim
        flat = _rows(w.detach()).float()
        rows, n = flat.shape
        m = math.ceil(n / d)
        scale = flat.pow(2).mean(dim=1).sqrt()
        x = torch.nn.functional.pad(flat / scale.clamp_min(1e-30).unsqueeze(1), (0, m * d - n))
        x = x.reshape(rows * m, d)
        cw = quantizer.book.tensor[: 2**bits].float()
        top = min(top_n, cw.shape[0])
        # squared distances over each sub-vector's real positions (a row's padded tail is 0 in x,
        # and its codewords' norms are taken over the real positions only), in chunks
        real = n - (m - 1) * d
        tail = torch.zeros(rows, m, dtype=torch.bool)
        tail[:, -1] = real < d
        tail = tail.reshape(-1)
        c2, c2_tail = cw.pow(2).sum(dim=1), cw[:, :real].pow(2).sum(dim=1)
        step = max(1, 2**22 // cw.shape[0])
        nears, idxs = [], []
        for i in range(0, len(x), step):
            xi = x[i:i + step]
            c2i = torch.where(tail[i:i + step].unsqueeze(1), c2_tail, c2)
            dist = (xi.pow(2).sum(dim=1, keepdim=True) + c2i - 2 * xi @ cw.T).clamp_min(0)
            near, idx = dist.topk(top, dim=1, largest=False)
            nears.append(near)
            idxs.append(idx)
        near, idx = torch.cat(nears), torch.cat(idxs)
        self.shape, self.n, self.dim = tuple(w.shape), n, d
        self.register_buffer("codewords", cw)
        self.register_buffer("candidates", idx)
        self.register_buffer("scale", scale)
        self.register_buffer("frozen", torch.zeros(len(idx), dtype=torch.bool))
        #: the candidate each frozen sub-vector was fixed to (its logits no longer decide it)
        self.register_buffer("choice", torch.zeros(len(idx), dtype=torch.long))
        self.logits = torch.nn.Parameter(-near / near[:, 0].mean().clamp_min(1e-12))

    def _picked(self) -> Tensor:
        """Each sub-vector's hard candidate: its frozen choice, else its highest ratio."""
        return torch.where(self.frozen, self.choice, self.logits.argmax(dim=1))

    def ratios(self) -> Tensor:
        hard = torch.nn.functional.one_hot(self._picked(), self.logits.shape[1]).to(self.logits.dtype)
        if not self.training:
            return hard
        return torch.where(self.frozen.unsqueeze(1), hard, torch.softmax(self.logits, dim=1))

    def indices(self) -> Tensor:
        """The hard assignment: each sub-vector's codeword index."""
        return self.candidates.gather(1, self._picked().unsqueeze(1)).squeeze(1)

    def forward(self) -> Tensor:
        vals = (self.ratios().unsqueeze(-1) * self.codewords[self.candidates]).sum(1)  # [N, d]
        rows = self.scale.shape[0]
        vals = vals.reshape(rows, -1)[:, : self.n] * self.scale.unsqueeze(1)
        return vals.reshape(self.shape)

    @torch.no_grad()
    def anneal(self, progress: float) -> None:
        """Freeze the most confident sub-vectors until ``progress`` of them are frozen."""
        confidence = torch.softmax(self.logits, dim=1).amax(dim=1).masked_fill(self.frozen, float("inf"))
        target = min(len(confidence), math.ceil(progress * len(confidence) - 1e-9))
        order = torch.argsort(confidence, descending=True, stable=True)[:target]
        newly = order[~self.frozen[order]]
        self.choice[newly] = self.logits[newly].argmax(dim=1)
        self.frozen[newly] = True


@dataclass(frozen=True)
class CodebookConfig:
    """Options of the codebook quantizer."""

    #: a codebook file from `bitnas codebook build` ("": the built-in Gaussian codebook)
    path: str = ""
    #: codeword dimension d (0: the file's, or 4 for the built-in); must match the file's
    dim: int = 0
    #: bits of each row's scale as stored (32: a float scale)
    scale_bits: int = 32
    #: the seed of the built-in codebook (a file's codewords are fixed)
    seed: int = 0
    #: how QAT fine-tunes the assignment: "hard" (the float weights, straight through the
    #: nearest codeword) or "soft" (VQ4ALL: learnable ratios over each sub-vector's top_n
    #: nearest codewords, frozen progressively); PTQ is always the hard nearest assignment
    assign: str = "hard"
    #: candidates per sub-vector in soft mode
    top_n: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.dim <= MAX_DIM:
            raise BitnasError(f"dim must be 0 (the codebook's) or 1..{MAX_DIM}, got {self.dim}")
        if not 1 <= self.scale_bits <= 32:
            raise BitnasError(f"scale_bits must be 1..32, got {self.scale_bits}")
        if self.seed < 0:
            raise BitnasError(f"seed must be non-negative, got {self.seed}")
        if self.assign not in ("hard", "soft"):
            raise BitnasError(f"assign must be 'hard' or 'soft', got {self.assign!r}")
        if not 1 <= self.top_n <= 64:
            raise BitnasError(f"top_n must be 1..64, got {self.top_n}")
        if self.path and self.seed:
            raise BitnasError("option seed applies to the built-in codebook only; drop it, or drop path")


@QUANTIZERS.register("codebook")
class CodebookQuantizer(Quantizer):
    """A universal codebook (VQ4ALL): d-dim sub-vectors of RMS-scaled rows index shared codewords."""

    Config = CodebookConfig
    name = "codebook"

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        c = self.config
        if not c.path:
            self.book = builtin_codebook(c.dim or BUILTIN_DIM, c.seed)
            return
        self.book = load_codebook(c.path)
        if c.dim and c.dim != self.book.dim:
            raise BitnasError(f"codebook {c.path} holds {self.book.dim}-dim codewords, but quantizer "
                              f"codebook option dim = {c.dim}; drop the option or build a codebook "
                              f"with `bitnas codebook build ... --dim {c.dim}`")

    def supported_bits(self) -> frozenset[int]:
        """The index widths the codebook serves: 1..B for K = 2^B codewords."""
        return frozenset(range(1, self.book.index_bits + 1))

    def _check(self, bits: int) -> None:
        b = self.book
        if not 1 <= bits <= b.index_bits:
            raise BitnasError(f"codebook {self.config.path or b.origin} holds {b.size} codewords: at most "
                              f"{b.index_bits}-bit indices; w_bits = {bits} needs a codebook built with "
                              f"`bitnas codebook build ... --bits {bits}` (or use w_bits <= {b.index_bits})")

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """b bits per d-element sub-vector of each row, one scale per row, and the whole
        codebook as a shared structure (counted once per model)."""
        n = numel(shape)
        if bits >= FLOAT_BITS:
            return Storage(n * FLOAT_BITS)
        self._check(bits)
        rows = int(shape[0]) if len(shape) >= 2 else 1
        per_row = -(-(n // rows) // self.book.dim) if rows else 0
        return Storage(rows * per_row * bits, scale_bits=rows * self.config.scale_bits,
                       shared={f"codebook:{self.book.key}": self.book.rom_bits})

    def compute(self, bits: int) -> Compute:
        """A lookup of a 16-bit codeword value, then its multiply (a float multiply at 32 bits)."""
        if bits >= FLOAT_BITS:
            return Compute(ComputeKind.MULTIPLY)
        return Compute(ComputeKind.LOOKUP, operand_bits=CODEWORD_BITS)

    def trainable(self, w: Tensor, bits: int) -> torch.nn.Module | None:
        """In soft mode, VQ4ALL's learnable top-n ratios (:class:`SoftAssignment`)."""
        if self.config.assign != "soft" or bits >= FLOAT_BITS:
            return None
        return SoftAssignment(self, w, bits, self.config.top_n)

    def encode(self, w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
        """(indices [rows, ceil(row_len / d)] into the first 2^bits codewords, the rows' RMS
        scales [rows]): each sub-vector's nearest codeword over its real positions."""
        self._check(bits)
        d = self.book.dim
        ct = torch.float64 if w.dtype == torch.float64 else torch.float32
        flat = _rows(w.detach()).to(ct)
        rows, n = flat.shape
        m = math.ceil(n / d)
        scale = flat.pow(2).mean(dim=1).sqrt()
        x = torch.nn.functional.pad(flat / scale.clamp_min(1e-30).unsqueeze(1), (0, m * d - n))
        x = x.reshape(rows, m, d)
        cw = self.book.tensor[: 2**bits].to(device=w.device, dtype=ct)
        idx = _nearest(x.reshape(-1, d), cw, cw.pow(2).sum(dim=1)).reshape(rows, m)
        real = n - (m - 1) * d
        if real < d:  # each row's last sub-vector: its padded positions (0 in x) left out of |c|^2
            idx[:, -1] = _nearest(x[:, -1], cw, cw[:, :real].pow(2).sum(dim=1))
        return idx, scale

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        idx, scale = self.encode(w, bits)
        rows, m = idx.shape
        cw = self.book.tensor.to(device=w.device, dtype=w.dtype)
        vals = cw[idx.reshape(-1)].reshape(rows, m * self.book.dim)[:, : _rows(w).shape[1]]
        return (vals * scale.to(w.dtype).unsqueeze(1)).reshape(w.shape)
