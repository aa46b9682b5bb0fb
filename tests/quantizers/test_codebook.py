"""The universal-codebook quantizer: nested index sets, storage, building, the file, errors, CLI."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import scipy.stats
import torch

from bitnas.accounting import ComputeKind
from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.quantizers.codebook import (
    Codebook,
    CodebookQuantizer,
    build_codebook,
    builtin_codebook,
    load_codebook,
    load_sources,
    save_codebook,
    sub_vectors,
)
from bitnas.registry import QUANTIZERS
from tests.e2e.test_cli_errors import _one_line_error


def _net_a(sign: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"conv.weight": sign * torch.randn(16, 3, 3, 3, generator=g).abs(),  # 6 sub-vectors a row
            "conv.bias": torch.randn(16, generator=g),
            "bn.weight": torch.ones(16), "bn.running_mean": torch.zeros(16),
            "fc.weight": sign * torch.randn(10, 32, generator=g).abs()}  # 8 a row: 96 + 80 = 176


def _net_b(sign: float = -1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {"fc.weight": sign * torch.randn(8, 20, generator=g).abs(),  # 5 a row: 40
            "conv1d.weight": sign * torch.randn(4, 2, 5, generator=g).abs()}  # 2 a row: 8, total 48


@pytest.fixture
def sources(tmp_path):
    """Two cached models as the FP cache writes them, plus a checkpoint to be skipped."""
    cache = tmp_path / "run" / "fp_cache"
    cache.mkdir(parents=True)
    torch.save({"state_dict": _net_a(), "identity": "{}", "sha256": "x"}, cache / "a.pt")
    torch.save({"state_dict": _net_b(), "identity": "{}", "sha256": "x"}, cache / "b.pt")
    (cache / "b.ckpt.pt").write_bytes(b"a half-written training checkpoint")
    return cache / "a.pt", cache / "b.pt"


@pytest.fixture
def built(tmp_path, sources):
    book = build_codebook(load_sources(sources), dim=4, bits=4, per_source=40, seed=3)
    return save_codebook(book, tmp_path / "book.npz")


def _err(w, q, b):
    return float(((q.quantize(w, b) - w) ** 2).mean())


def test_builtin_sets_are_nested_so_more_bits_never_hurt():
    q = QUANTIZERS.create("codebook")
    w = torch.randn(16, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    errors = [_err(w, q, b) for b in range(1, 13)]
    for b, (lo, hi) in enumerate(zip(errors, errors[1:], strict=False), start=1):
        assert hi <= lo * (1 + 1e-6), f"{b + 1} bits err {hi} > {b} bits err {lo}"
    assert errors[-1] < 0.5 * errors[0]  # the bits are used
    for b in (1, 3, 6):
        idx, _ = q.encode(w, b)
        assert int(idx.max()) < 2**b  # only the first 2^b codewords
    assert q.supported_bits() == frozenset(range(1, 13))
    assert torch.equal(q.quantize(w, 32), w)


def test_builtin_codebook_is_a_seeded_standard_normal():
    book = builtin_codebook()
    expect = torch.randn(4096, 4, generator=torch.Generator().manual_seed(0)).to(torch.float16).numpy()
    assert np.array_equal(book.codewords, expect) and book.index_bits == 12
    assert builtin_codebook(8, 1).dim == 8
    assert not np.array_equal(builtin_codebook(4, 1).codewords, book.codewords)
    assert CodebookQuantizer(dim=8).book.dim == 8


def test_storage_by_hand():
    q = QUANTIZERS.create("codebook", dim=4)
    s = q.storage((4, 6), 3)  # 6 elements a row, d = 4: 2 sub-vectors a row, 8 in all
    key = hashlib.sha256(q.book.codewords.astype("<f2").tobytes()).hexdigest()[:16]
    assert (s.element_bits, s.scale_bits, s.table_bits) == (4 * 2 * 3, 4 * 32, 0)
    assert dict(s.shared) == {f"codebook:{key}": 4096 * 4 * 16}
    assert QUANTIZERS.create("codebook", scale_bits=16).storage((4, 6), 3).scale_bits == 64
    assert q.storage((6,), 3).element_bits == 2 * 3  # a 1-D tensor is one row
    assert q.storage((4, 6), 32).element_bits == 24 * 32 and not q.storage((4, 6), 32).shared
    assert q.compute(3).kind is ComputeKind.LOOKUP and q.compute(3).operand_bits == 16
    assert q.compute(32).kind is ComputeKind.MULTIPLY


def test_shared_key_follows_the_codewords(tmp_path, built, sources):
    other = save_codebook(build_codebook(load_sources(sources), dim=4, bits=4, per_source=40, seed=4),
                          tmp_path / "other.npz")
    keys = [dict(QUANTIZERS.create("codebook", path=str(p)).storage((4, 6), 2).shared)
            for p in (built, built, other)]
    assert keys[0] == keys[1] and keys[0].keys() != keys[2].keys()
    assert keys[0] == {f"codebook:{load_codebook(built).key}": 16 * 4 * 16}


def test_build_round_trips_and_is_deterministic(tmp_path, built, sources):
    book = load_codebook(built)
    assert book.codewords.shape == (16, 4) and book.codewords.dtype == np.float16
    assert book.sources == tuple(str(p) for p in sources)
    assert book.samples_per_source == (40, 40) and book.seed == 3 and book.bandwidth > 0
    again = build_codebook(load_sources(sources), dim=4, bits=4, per_source=40, seed=3)
    assert np.array_equal(again.codewords, book.codewords)
    assert again.bandwidth == pytest.approx(book.bandwidth)
    save_codebook(load_codebook(built), tmp_path / "copy.npz")  # what is read writes back the same
    assert np.array_equal(load_codebook(tmp_path / "copy.npz").codewords, book.codewords)
    other = build_codebook(load_sources(sources), dim=4, bits=4, per_source=40, seed=5)
    assert not np.array_equal(other.codewords, book.codewords)
    bigger = build_codebook(load_sources(sources), dim=2, bits=6, per_source=40, seed=3)
    assert bigger.codewords.shape == (64, 2) and bigger.index_bits == 6


def test_every_source_gives_the_same_number_of_samples(monkeypatch):
    seen = []
    real = scipy.stats.gaussian_kde

    def spy(data, *args, **kwargs):
        seen.append(np.array(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(scipy.stats, "gaussian_kde", spy)
    lines: list[str] = []
    # A (all positive) has 176 sub-vectors, B (all negative) 48: still 40 from each
    build_codebook({"a": _net_a(), "b": _net_b()}, dim=4, bits=3, per_source=40, seed=0, log=lines.append)
    data = seen[0].T
    assert data.shape == (80, 4)
    pos, neg = data[(data > 0).all(1)], data[(data < 0).all(1)]
    assert len(pos) == len(neg) == 40
    avail_b = sub_vectors(_net_b()["fc.weight"], 4)
    avail_b = np.concatenate([avail_b, sub_vectors(_net_b()["conv1d.weight"], 4)])
    assert len({r.tobytes() for r in neg}) == 40  # without replacement
    assert all((avail_b == r).all(1).any() for r in neg)  # real sub-vectors of B
    assert lines == ["a: 2 weight tensors, 176 sub-vectors available, 40 sampled",
                     "b: 2 weight tensors, 48 sub-vectors available, 40 sampled"]


def test_quantized_weights_are_scale_times_the_nearest_codeword(built):
    q = QUANTIZERS.create("codebook", path=str(built))
    cw = load_codebook(built).tensor.double()
    w = torch.randn(3, 7, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for bits in (1, 2, 4):
        out = q.quantize(w, bits)
        for r in range(3):
            scale = w[r].pow(2).mean().sqrt()
            x = w[r] / scale
            for start in (0, 4):  # 7 elements: a full sub-vector, then 3 real positions
                real = x[start:start + 4]
                dist = ((cw[: 2**bits, : len(real)] - real) ** 2).sum(1)
                best = cw[int(dist.argmin())][: len(real)]
                assert torch.equal(out[r, start:start + 4], best * scale), (bits, r, start)
    assert q.quantize(w.float(), 4).dtype == torch.float32
    with pytest.raises(BitnasError, match="holds 16 codewords: at most 4-bit indices"):
        q.quantize(w, 5)
    assert q.supported_bits() == frozenset({1, 2, 3, 4})


def test_padding_does_not_sway_the_assignment(tmp_path):
    cw = np.array([[0.5, 0.0], [1.0, 4.0]], dtype=np.float16)
    path = save_codebook(Codebook(cw), tmp_path / "pad.npz")
    w = torch.ones(1, 3)  # RMS 1; sub-vectors [1, 1] and [1, pad]
    # [1, 1]: c0 (1.25) beats c1 (9); [1, pad]: c1 matches exactly on the real position, but
    # counting the padding as 0 would pick c0 (0.25 < 16)
    assert QUANTIZERS.create("codebook", path=str(path)).quantize(w, 1).tolist() == [[0.5, 0.0, 1.0]]


def test_zero_rows_and_odd_shapes():
    q = QUANTIZERS.create("codebook")
    w = torch.randn(3, 5, 2)
    w[1] = 0
    out = q.quantize(w, 6)
    assert out.shape == w.shape and torch.equal(out[1], torch.zeros(5, 2))
    assert q.quantize(torch.tensor(0.3), 4).shape == ()
    assert q.quantize(torch.randn(9).half(), 4).dtype == torch.float16


def _one_line(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


def test_one_line_errors(tmp_path, built):
    missing = tmp_path / "nope.npz"
    with pytest.raises(BitnasError) as e:
        QUANTIZERS.create("codebook", path=str(missing))
    _one_line(e, str(missing), "does not exist", "bitnas codebook build")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(BitnasError) as e:
        QUANTIZERS.create("codebook", path=str(corrupt))
    _one_line(e, str(corrupt), "cannot be read", "bitnas codebook build")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, codewords=np.zeros((3, 4), np.float16))
    with pytest.raises(BitnasError) as e:
        load_codebook(wrong)
    _one_line(e, str(wrong), "lacks dim")
    with pytest.raises(BitnasError) as e:
        QUANTIZERS.create("codebook", path=str(built), dim=8)
    _one_line(e, f"codebook {built} holds 4-dim codewords, but quantizer codebook option dim = 8")
    with pytest.raises(BitnasError) as e:
        QUANTIZERS.create("codebook").quantize(torch.randn(4, 4), 13)
    _one_line(e, "holds 4096 codewords: at most 12-bit indices", "--bits 13")
    with pytest.raises(BitnasError) as e:
        QUANTIZERS.create("codebook").storage((4, 4), 13)
    _one_line(e, "at most 12-bit indices")
    with pytest.raises(BitnasError, match="seed applies to the built-in"):
        QUANTIZERS.create("codebook", path=str(built), seed=1)
    with pytest.raises(BitnasError, match="singular covariance"):
        build_codebook({"a": {"w.weight": torch.ones(4, 8)}}, dim=4, bits=2, per_source=8)
    with pytest.raises(BitnasError, match="fewer than the 100"):
        build_codebook({"a": _net_b()}, dim=4, bits=2, per_source=100)


def test_load_is_cached_until_the_file_changes(tmp_path, built, sources):
    assert load_codebook(built) is load_codebook(str(built))
    first = load_codebook(built)
    save_codebook(build_codebook(load_sources(sources), dim=4, bits=3, per_source=40, seed=1), built)
    assert load_codebook(built).size == 8 and first.size == 16


def test_cli_build_from_a_run_directory(tmp_path, sources, capsys):
    out = tmp_path / "cb.npz"
    run = tmp_path / "run"
    assert main(["codebook", "build", str(run), "--out", str(out), "--bits", "5",
                 "--per-source", "40", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and str(sources[0]) in lines[0] and str(sources[1]) in lines[1]
    assert "48 sub-vectors available, 40 sampled" in lines[1]
    assert "32 codewords of dimension 4" in lines[2] and "256 bytes" in lines[2] and str(out) in lines[2]
    book = load_codebook(out)
    assert book.codewords.shape == (32, 4) and book.sources == tuple(str(p) for p in sources)
    assert book.samples_per_source == (40, 40) and book.seed == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("args,fragment", [
    (["MISSING"], "does not exist"),
    (["RUN", "--bits", "17"], "bits must be 1..16"),
    (["RUN", "--dim", "0"], "dim must be 1..64"),
    (["RUN", "--per-source", "100"], "fewer than the 100"),
    (["NOTTORCH"], "is not a torch file"),
    (["EMPTYRUN"], "has no cached models"),
    (["RUN", "--out", "TMP"], "is a directory"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, sources, capsys, args, fragment):
    (tmp_path / "not_torch.pt").write_text("hello")
    (tmp_path / "empty_run").mkdir()
    subst = {"MISSING": str(tmp_path / "missing.pt"), "RUN": str(tmp_path / "run"), "TMP": str(tmp_path),
             "NOTTORCH": str(tmp_path / "not_torch.pt"), "EMPTYRUN": str(tmp_path / "empty_run")}
    argv = [subst.get(a, a) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "cb.npz")]
    before = sorted(p.name for p in tmp_path.iterdir())
    _one_line_error(capsys, ["codebook", "build", *argv], fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_soft_assignment_fine_tunes_ratios_and_freezes_progressively():
    from bitnas.quantizers.codebook import SoftAssignment

    torch.manual_seed(0)
    w = torch.randn(6, 10)
    q = QUANTIZERS.create("codebook", assign="soft", top_n=4)
    soft = q.trainable(w, 6)
    assert isinstance(soft, SoftAssignment)
    # hard at eval: exactly the nearest codewords of PTQ, before any training
    soft.eval()
    assert torch.allclose(soft(), q.quantize(w, 6), atol=1e-6)
    soft.train()
    target = torch.randn(6, 10)
    opt = torch.optim.Adam(soft.parameters(), lr=0.1)
    before = float(((soft() - target) ** 2).sum().detach())
    for _ in range(50):
        opt.zero_grad()
        ((soft() - target) ** 2).sum().backward()
        opt.step()
    assert float(((soft() - target) ** 2).sum().detach()) < before  # the ratios learn
    soft.anneal(0.5)
    assert int(soft.frozen.sum()) == math.ceil(0.5 * len(soft.frozen))
    soft.anneal(1.0)
    assert bool(soft.frozen.all())
    hard = soft()  # all frozen: one codeword a sub-vector, in training mode too
    soft.eval()
    assert torch.equal(hard, soft())
    assert QUANTIZERS.create("codebook").trainable(w, 6) is None  # hard mode: straight through


def test_a_frozen_sub_vector_keeps_its_codeword_while_training_goes_on():
    torch.manual_seed(1)
    soft = QUANTIZERS.create("codebook", assign="soft", top_n=6).trainable(torch.randn(8, 12), 6)
    soft.train()
    soft.anneal(0.5)
    frozen = soft.frozen.clone()
    kept = soft.indices()[frozen].clone()
    # momentum and weight decay move every logit, frozen ones included
    opt = torch.optim.Adam(soft.parameters(), lr=0.5, weight_decay=0.1)
    target = torch.randn(8, 12)
    for _ in range(60):
        opt.zero_grad()
        ((soft() - target) ** 2).sum().backward()
        opt.step()
    assert torch.equal(soft.indices()[frozen], kept)
    soft.anneal(1.0)
    assert torch.equal(soft.indices()[frozen], kept) and bool(soft.frozen.all())


def test_soft_assignment_starts_at_the_nearest_codewords_of_a_padded_layer():
    # rows of 10 = 2 sub-vectors of 4 and a tail of 2: the tail's distances count real positions
    torch.manual_seed(2)
    w = torch.randn(16, 10)
    q = QUANTIZERS.create("codebook", assign="soft", top_n=3)
    soft = q.trainable(w, 8)
    idx, _ = q.encode(w, 8)
    assert torch.equal(soft.candidates[:, 0], idx.reshape(-1))  # the nearest is the first candidate


def test_soft_mode_runs_through_qat(trained_digits_model):
    from bitnas.evaluators import TrainConfig, train_fp
    from bitnas.plan import LayerQuant, QuantPlan
    from bitnas.quantizers import fake_quant_layers, fake_quantize

    model, groups, data = trained_digits_model
    plan = QuantPlan({g: LayerQuant(4, 8, "codebook", options={"assign": "soft"}) for g in groups})
    qmodel = fake_quantize(model, plan, groups)
    for layer in fake_quant_layers(qmodel):
        for act in layer.acts:
            act.observing = True
    qmodel(data.train.x[:64])
    for layer in fake_quant_layers(qmodel):
        for act in layer.acts:
            act.observing = False
    train_fp(qmodel, data.train, TrainConfig(epochs=2, lr=0.01), 0)
    layers = fake_quant_layers(qmodel)
    assert all("0" in layer.trained and bool(layer.trained["0"].frozen.all()) for layer in layers)
    with torch.no_grad():  # deployed: every weight is scale x one codeword
        w, _ = layers[0].quantized()
        soft = layers[0].trained["0"]
        idx = soft.indices()
        rows = soft.scale.shape[0]
        expect = soft.codewords[idx].reshape(rows, -1)[:, : soft.n] * soft.scale.unsqueeze(1)
        assert torch.allclose(w, expect.reshape(w.shape))
