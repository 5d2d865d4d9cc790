"""The ``qk`` block (rtl/qk_block.py) as generated Verilog under cocotb, on Verilator and Icarus,
against sim/qk.py bit for bit: probabilities, refetch decisions, per-row DRAM bytes and the
counters, with cocotbext-axi's AXI RAM stalling AR and R at random and random backpressure.
Random and adversarial heads back to back (flat rows that all refetch, a dominant key, extreme
values, N = 1, N = n_max, alive masks with holes), real MiniLM-L6 heads at 6+4 and 8+4 in
both reuse modes at thresholds 0.05 and 0.1; and the ``attnforge`` commands of the block."""

import dataclasses

import numpy as np
import pytest

from attnforge.configs.qk import QKConfig
from attnforge.gen.cli import main
from attnforge.sim import minilm as M
from attnforge.tb import qk as bench

pytestmark = pytest.mark.sim

SMALL = QKConfig(head_dim=8, msb_bits=8, multipliers=16, n_max=32, sum_frac_bits=17,
                 axi_data_width=32)
SMALL_SET = ["head_dim=8", "msb_bits=8", "multipliers=16", "n_max=32", "sum_frac_bits=17",
             "axi_data_width=32"]
#: MiniLM heads: (mode, threshold, layer, head)
MINILM_HEADS = [("summarization", 0.1, 2, 5), ("generation", 0.05, 0, 9),
                ("summarization", 0.05, 4, 1), ("generation", 0.1, 3, 2)]


@pytest.mark.xdist_group("qk-small")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression(simulator, build_root, seed):
    """Every kind of head back to back; seed 0 at full rate, the others with random stalls."""
    print(bench.regression(SMALL, seed, sim=simulator, build_root=build_root))


@pytest.mark.parametrize("change", [dict(key_banks=1), dict(key_banks=4), dict(msb_bits=4)],
                         ids=["one-bank", "four-banks", "msb4"])
def test_other_configurations(build_root, change):
    """One Key buffer bank (generation rows one at a time), four (four rows' fetches
    overlapping), and 4+4 keys (the narrowest MSB plane)."""
    cfg = dataclasses.replace(SMALL, **change)
    print(bench.regression(cfg, 4, sim="verilator", build_root=build_root))


@pytest.mark.xdist_group("qk-small")
def test_speculation_squashes_and_recovers(build_root):
    """Summarization rows alternating confident and flat: every flat row squashes the rows
    sent after it, which are sent again; the output is still the model's, in row order."""
    rng = np.random.default_rng(7)
    keys = rng.integers(-128, 128, (SMALL.n_max, SMALL.head_dim))
    spread = np.array([2047, 2, 2047, 2047, 1, 2, 2047, 3])[:, None]
    q = rng.integers(-spread, spread + 1, (8, SMALL.head_dim))
    head = bench.Head.make(q, keys, 1.0 / 2048, 0.1, "summarization", cfg=SMALL)
    want = head.expected(SMALL)
    assert want.refetched.any() and not want.refetched.all()
    result = bench.simulate([head], SMALL, build_root=build_root)
    bench.compare([head], result, SMALL)
    assert result["counters"]["squashed"] > 0
    # the LSB plane is fetched once, by the first refetched row
    lsb = result["heads"][0]["lsb_bytes"]
    assert lsb[np.argmax(want.refetched)] == SMALL.n_max * SMALL.lsb_row_bytes
    assert lsb.sum() == lsb.max()


def _minilm_heads(cfg, n_keys, rows):
    heads = []
    for mode, threshold, layer, head in MINILM_HEADS:
        q, k, scale = M.qk_head(layer, head, cfg.key_bits)
        picked = np.linspace(0, len(q) - 1, rows).astype(int)
        heads.append(bench.Head.make(q[picked], k[:n_keys], scale, threshold, mode, None,
                                     f"L{layer}H{head}", cfg))
    return heads


@pytest.mark.slow
def test_minilm_heads_6_4_verilator(build_root):
    """Four real heads of a 267-token passage (all keys) at 6+4, both modes, both thresholds."""
    cfg = QKConfig(head_dim=32, msb_bits=6, multipliers=64, n_max=512, sum_frac_bits=21)
    heads = _minilm_heads(cfg, None, 3)
    result = bench.simulate(heads, cfg, build_root=build_root, in_rate=0.8, out_rate=0.7,
                            ar_rate=0.7, r_rate=0.6, seed=6)
    bench.compare(heads, result, cfg)
    print(result["counters"])


@pytest.mark.slow
def test_minilm_heads_8_4_icarus(simulators, build_root):
    """Four real heads at 8+4 on Icarus, cut to their first 64 keys (Icarus runs the wide
    datapath about 50× slower than Verilator; `attnforge bench qk` runs both settings in full)."""
    if "icarus" not in simulators:
        pytest.skip("iverilog not on PATH (apt-get install iverilog)")
    cfg = QKConfig(head_dim=32, msb_bits=8, multipliers=64, n_max=64, sum_frac_bits=18)
    heads = _minilm_heads(cfg, 64, 2)
    result = bench.simulate(heads, cfg, sim="icarus", build_root=build_root, in_rate=0.8,
                            out_rate=0.7, ar_rate=0.7, r_rate=0.6, seed=8)
    bench.compare(heads, result, cfg)


# ---- the commands --------------------------------------------------------------------------

def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_verilog_writes_module_and_manifest(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "verilog", "qk", "--set", *SMALL_SET, "-o", tmp_path)
    assert status == 0
    manifest = (tmp_path / "qk.json").read_text()
    for field in ('"head"', '"n_keys"', '"alive"', '"msb_base"', '"refetched"', '"msb_bytes"',
                  '"axi__arvalid"'):
        assert field in manifest
    assert "module qk" in (tmp_path / "qk.sv").read_text()


def test_lanes_not_a_power_of_two_is_refused(capsys, tmp_path):
    status, _, err = run_cli(capsys, "verilog", "qk", "--set", "multipliers=96", "-o", tmp_path / "o")
    assert status == 2
    assert "scores_per_cycle" in err and "96/32 = 3" in err and "power of two" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arrays, words", [
    (dict(keys=np.zeros((4, 8), int), scale=1e-3), ["no q", "q: int B×D"]),
    (dict(q=np.zeros((2, 8), int), keys=np.full((4, 8), 5000), scale=1e-3), ["key 5000", "[-2048, 2047]"]),
    (dict(q=np.zeros((2, 8), int), keys=np.zeros((40, 8), int), scale=1e-3), ["n_max=32"]),
    (dict(q=np.zeros((2, 8), int), keys=np.zeros((4, 8), int), scale=1e-3, mode="bulk"),
     ["mode='bulk'", "summarization"]),
    (dict(q=np.zeros((2, 8), int), keys=np.zeros((4, 8), int), scale=1e-3,
          alive=np.zeros(4, bool)), ["at least one key"]),
    (dict(q=np.zeros((2, 8), int), keys=np.zeros((4, 8), int), scale=-1.0), ["scale", "positive"]),
])
def test_run_rejects_bad_input(capsys, tmp_path, arrays, words):
    path, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(path, **arrays)
    status, _, err = run_cli(capsys, "run", "qk", "--set", *SMALL_SET, "--input", path, "--output", out)
    assert status == 2, err
    for word in words:
        assert word in err
    assert not out.exists()


@pytest.mark.xdist_group("qk-small")
def test_run_writes_probabilities_and_traffic(capsys, tmp_path, build_root):
    rng = np.random.default_rng(3)
    q, keys = rng.integers(-2048, 2048, (5, 8)), rng.integers(-128, 128, (24, 8))
    alive = rng.random(24) < 0.7
    path, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(path, q=q, keys=keys, scale=2e-5, alive=alive, mode="generation", threshold=0.3)
    status, stdout, _ = run_cli(capsys, "run", "qk", "--set", *SMALL_SET, "--input", path,
                                "--output", out, "--build-root", build_root)
    assert status == 0, stdout
    assert "matches the model" in stdout
    head = bench.Head.make(q, keys, 2e-5, 0.3, "generation", alive, cfg=SMALL)
    want = head.expected(SMALL)
    with np.load(out) as got:
        np.testing.assert_array_equal(got["probs"], want.probs)
        np.testing.assert_array_equal(got["refetched"], want.refetched)
        np.testing.assert_array_equal(got["dram_bytes"], want.dram_bytes)
        assert int(got["prob_frac_bits"]) == SMALL.prob_frac_bits
        assert got["cycles"].shape == (5,) and got["cycles"].min() > 0
        assert int(got["total_cycles"]) == got["cycles"].sum()
