"""The ``attnforge`` command line: parameters, generation, input errors, regression vectors."""

import json

import numpy as np
import pytest

from attnforge.configs.topk import TopKConfig
from attnforge.gen.cli import main
from attnforge.sim.topk import topk_mask
from attnforge.tb.vectors import adversarial_vectors, regression_batch, stream_rates

TINY = ["width=8", "n_max=64", "lanes=2", "comparators=4"]
TINY_CFG = TopKConfig(width=8, n_max=64, lanes=2, comparators=4)


def run_cli(capsys, *argv):
    """Run ``attnforge argv``; return (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ---- --set ----------------------------------------------------------------------------

@pytest.mark.parametrize("sets", [["--set", *TINY],
                                  [arg for item in TINY for arg in ("--set", item)],
                                  ["--set", *TINY[:2], "--set", *TINY[2:]]])
def test_set_forms_are_equivalent(capsys, sets):
    status, out, _ = run_cli(capsys, "params", "topk", *sets)
    assert status == 0
    assert "with --set: width=8 n_max=64 lanes=2 comparators=4 radix_bits=4" in out


@pytest.mark.parametrize("assignment, words", [
    ("lanes=3", ["lanes=3", "power of two in [1, 64]"]),
    ("width=40", ["width=40", "[4, 32]"]),
    ("width=abc", ["width", "integer", "'abc'"]),
    ("comparators=4", ["comparators=4", "lanes=8"]),          # cross-field: comparators ≥ lanes
    ("depth=3", ["unknown parameter 'depth'", "width", "radix_bits"]),
    ("lanes", ["name=value", "'lanes'"]),
])
def test_bad_set_exits_2_and_writes_nothing(capsys, tmp_path, assignment, words):
    out_dir = tmp_path / "out"
    status, out, err = run_cli(capsys, "verilog", "topk", "--set", assignment, "-o", out_dir)
    assert status == 2
    assert err.startswith("error: ")
    for word in words:
        assert word in err
    assert not out_dir.exists()


def test_unknown_block_lists_blocks(capsys, tmp_path):
    status, _, err = run_cli(capsys, "verilog", "softmaxx", "-o", tmp_path / "out")
    assert status == 2
    assert "unknown block 'softmaxx'" in err and "topk" in err
    assert not (tmp_path / "out").exists()


def test_help_lists_parameters_with_defaults_and_ranges(capsys):
    status, out, _ = run_cli(capsys, "verilog", "--help")
    assert status == 0
    width = next(line for line in out.splitlines() if line.startswith("width "))
    assert "16" in width and "[4, 32]" in width and "score bits" in width
    assert "a power of two in [1, 64]" in out


def test_usage_error_exits_2(capsys):
    status, _, err = run_cli(capsys, "fpga", "topk", "--board", "de0-nano")
    assert status == 2 and "de0-nano" in err


def test_fpga_rejects_a_timeout_that_is_not_positive(capsys, tmp_path):
    status, _, err = run_cli(capsys, "fpga", "topk", "--board", "ulx3s-85f", "--timeout", "0",
                             "-o", tmp_path)
    assert status == 2 and "--timeout=0" in err and "positive" in err
    assert not any(tmp_path.iterdir())


# ---- verilog --------------------------------------------------------------------------

def test_verilog_writes_module_and_manifest(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "verilog", "topk", "--set", *TINY, "-o", tmp_path)
    assert status == 0
    sv, manifest = tmp_path / "topk.sv", tmp_path / "topk.json"
    assert out.split() == [str(sv), str(manifest)]
    assert "module topk" in sv.read_text()
    info = json.loads(manifest.read_text())
    assert info["parameters"] == TINY_CFG.as_dict()
    fields_in, fields_out = info["streams"]["i"]["fields"], info["streams"]["o"]["fields"]
    assert info["streams"]["i"]["direction"] == "in" and info["streams"]["o"]["direction"] == "out"
    assert set(fields_in) == {"scores", "k", "last"}
    assert set(fields_out) == {"values", "indices", "count", "last"}
    assert fields_in["scores"]["count"] == 2 and fields_in["scores"]["width"] == 8
    assert fields_in["scores"]["signed"]


# ---- run: bad inputs ------------------------------------------------------------------

def _inputs(path, scores, k=None):
    arrays = {"scores": np.asarray(scores)}
    if k is not None:
        arrays["k"] = np.asarray(k)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case, words", [
    ("k_too_big", ["k=65", "[1, N=64]"]),
    ("k_zero", ["k=0", "[1, N=64]"]),
    ("too_wide", ["score 128", "width=8", "[-128, 127]"]),
    ("n_not_multiple", ["N=63", "multiple of lanes=2"]),
    ("n_too_long", ["N=128", "n_max"]),
    ("no_k", ["no k array"]),
    ("float_scores", ["integers"]),
    ("not_npz", ["cannot read"]),
    ("npy", ["cannot read", "single array"]),
])
def test_run_rejects_bad_inputs(capsys, tmp_path, case, words):
    rng = np.random.default_rng(0)
    good = rng.integers(-128, 128, size=(3, 64))
    path = tmp_path / "in.npz"
    if case == "k_too_big":
        _inputs(path, good, [1, 65, 3])
    elif case == "k_zero":
        _inputs(path, good, [1, 0, 3])
    elif case == "too_wide":
        good[1, 5] = 128
        _inputs(path, good, [1, 2, 3])
    elif case == "n_not_multiple":
        _inputs(path, good[:, :63], [1, 2, 3])
    elif case == "n_too_long":
        _inputs(path, np.hstack([good, good]), [1, 2, 3])
    elif case == "no_k":
        _inputs(path, good)
    elif case == "float_scores":
        _inputs(path, good.astype(float), [1, 2, 3])
    elif case == "npy":
        with open(path, "wb") as f:
            np.save(f, good)
    else:
        path.write_text("not an npz")
    out = tmp_path / "out.npz"
    status, _, err = run_cli(capsys, "run", "topk", "--set", *TINY, "--input", path, "--output", out)
    assert status == 2
    assert err.startswith("error: ")
    for word in words:
        assert word in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


# ---- regression vectors ---------------------------------------------------------------

@pytest.mark.parametrize("cfg", [TINY_CFG, TopKConfig(),
                                 TopKConfig(width=4, n_max=16, lanes=4, comparators=4, radix_bits=2)])
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_regression_batch(cfg, seed):
    batch = regression_batch(cfg, seed)
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    assert len(batch.scores) == len(batch.k) == len(batch.kinds) == len(batch) > 0
    assert batch.k.dtype == np.int64
    lengths = batch.lengths
    assert np.all(lengths % cfg.lanes == 0) and lengths.min() >= cfg.lanes and lengths.max() <= cfg.n_max
    assert np.all(batch.k >= 1) and np.all(batch.k <= lengths)
    if seed == 0:
        assert {cfg.n_max, cfg.lanes} <= set(lengths.tolist())
    elif seed % 2 == 0:
        assert cfg.n_max in lengths
    kinds = set(adversarial_vectors(cfg, cfg.lanes, np.random.default_rng(0))) | {"random", "random_narrow"}
    for n in set(lengths.tolist()):
        rows = [i for i, length in enumerate(lengths) if length == n]
        assert {batch.kinds[i] for i in rows} == kinds
        assert {1, n} <= {int(batch.k[i]) for i in rows}
    for row, kind in zip(batch.scores, batch.kinds):
        assert row.dtype == np.int64 and row.min() >= lo and row.max() <= hi
        if kind in ("extremes", "all_min"):
            assert lo in row
        if kind == "all_max":
            assert hi in row
    assert len(set(lengths.tolist())) == min(3, cfg.n_max // cfg.lanes)
    # shuffled: neighbours mostly differ in kind (in generation order, two of three would not)
    changes = sum(a != b for a, b in zip(batch.kinds, batch.kinds[1:]))
    assert changes > len(batch) / 2
    again = regression_batch(cfg, seed)
    assert batch.kinds == again.kinds and np.array_equal(batch.k, again.k)
    assert all(np.array_equal(a, b) for a, b in zip(batch.scores, again.scores))


def test_adversarial_vectors():
    cfg = TINY_CFG
    vectors = adversarial_vectors(cfg, 64, np.random.default_rng(3))
    assert {"sorted", "reverse_sorted", "all_equal", "two_values", "extremes"} <= set(vectors)
    assert np.all(np.diff(vectors["sorted"]) >= 0)
    assert np.all(np.diff(vectors["reverse_sorted"]) <= 0)
    assert len(set(vectors["all_equal"].tolist())) == 1
    assert len(set(vectors["two_values"].tolist())) == 2
    assert set(vectors["extremes"].tolist()) == {-128, 127}
    low, high = sorted(set(vectors["adjacent_pair"].tolist()))
    assert low % 2 == 0 and high == low + 1
    assert all(len(v) == 64 for v in vectors.values())


def test_stream_rates_throttle_odd_seeds():
    assert stream_rates(0) == stream_rates(2) == (1.0, 1.0)
    in_rate, out_rate = stream_rates(1)
    assert in_rate < 1 and out_rate < 1


# ---- end to end on Verilator ----------------------------------------------------------

@pytest.mark.sim
@pytest.mark.xdist_group("topk-small")
def test_run_topk_on_verilator(capsys, tmp_path, build_root):
    rng = np.random.default_rng(11)
    scores = rng.integers(-128, 128, size=(6, 64))
    scores[2] = 5                                   # all equal: ties in input order
    k = np.array([1, 64, 7, 16, 33, 2])
    path = _inputs(tmp_path / "in.npz", scores, k)
    out = tmp_path / "sub" / "out.npz"
    status, stdout, _ = run_cli(capsys, "run", "topk", "--set", *TINY, "--input", path,
                                "--output", out, "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "6 vectors, N=64" in stdout and "matches the model" in stdout
    with np.load(out) as result:
        assert result["mask"].dtype == bool and result["mask"].shape == scores.shape
        assert result["cycles"].dtype == np.int64 and result["cycles"].shape == (6,)
        assert result["total_cycles"].shape == () and result["total_cycles"] >= result["cycles"].max()
        for row, row_k, mask in zip(scores, k, result["mask"]):
            np.testing.assert_array_equal(mask, topk_mask(row, row_k))
