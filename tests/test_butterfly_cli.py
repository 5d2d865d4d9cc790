"""``attnforge`` on the butterfly array: params, verilog, run fft (inputs and errors), verify."""

import json

import numpy as np
import pytest

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.gen.cli import main
from attnforge.sim import butterfly as model

TINY = ["width=12", "twiddle_bits=12", "n_max=32", "lanes=2"]
TINY_CFG = ButterflyConfig(width=12, twiddle_bits=12, n_max=32, lanes=2)


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_rejected(capsys, tmp_path, job, sets, arrays, words):
    """``attnforge run JOB`` on ``arrays``: exit status 2, an error naming ``words``, and
    nothing written beside the input."""
    path = tmp_path / "in.npz"
    np.savez(path, **arrays)
    status, _, err = run_cli(capsys, "run", job, "--set", *sets, "--input", path,
                             "--output", tmp_path / "out.npz")
    assert status == 2, err
    assert err.startswith("error: ")
    for word in words:
        assert word in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


def test_params_lists_the_formats(capsys):
    status, out, _ = run_cli(capsys, "params", "butterfly", "--set", *TINY)
    assert status == 0
    assert "twiddle_bits" in out and "n_max" in out
    assert "with --set: width=12 twiddle_bits=12 n_max=32 lanes=2 frame_max=4096 linear=1" in out


def test_verilog_writes_array_and_manifest(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "verilog", "butterfly", "--set", *TINY, "-o", tmp_path)
    assert status == 0
    sv, manifest = tmp_path / "butterfly.sv", tmp_path / "butterfly.json"
    assert out.split() == [str(sv), str(manifest)]
    assert "module butterfly" in sv.read_text()
    info = json.loads(manifest.read_text())
    assert info["parameters"] == TINY_CFG.as_dict()
    fields_in, fields_out = info["streams"]["i"]["fields"], info["streams"]["o"]["fields"]
    assert set(fields_in) == {"data", "log2n", "mode", "last"}
    assert set(fields_out) == {"data", "last"}
    assert set(info["streams"]["w"]["fields"]) == {"column", "pe", "addr", "coef", "shift"}
    assert fields_in["data"]["count"] == 2 and fields_in["data"]["width"] == 24
    assert "error" in info["ports"]


@pytest.mark.parametrize("assignment, words", [
    ("lanes=64", ["lanes=64", "n_max=32"]),
    ("width=19", ["width=19", "[4, 18]"]),
    ("n_max=48", ["n_max=48", "power of two"]),
])
def test_bad_parameters_exit_2(capsys, tmp_path, assignment, words):
    status, _, err = run_cli(capsys, "verilog", "butterfly", "--set", *TINY, assignment,
                             "-o", tmp_path / "out")
    assert status == 2 and err.startswith("error: ")
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, words", [
    ("n_not_power", ["N=24", "power of two", "[2, n_max=32]"]),
    ("n_too_long", ["N=64", "n_max=32"]),
    ("too_wide", ["re value 2048", "width=12", "[-2048, 2047]"]),
    ("im_too_wide", ["im value -2049", "[-2048, 2047]"]),
    ("float", ["integers", "float"]),
    ("no_re", ["no re array", "found x"]),
    ("shapes", ["differ in shape", "(3, 32)", "(3, 16)"]),
    ("one_d", ["2-D", "(32,)"]),
    ("empty", ["no transforms"]),
])
def test_run_fft_rejects_bad_inputs(capsys, tmp_path, case, words):
    rng = np.random.default_rng(0)
    re = rng.integers(-2048, 2048, size=(3, 32))
    im = rng.integers(-2048, 2048, size=(3, 32))
    arrays = {"re": re, "im": im}
    if case == "n_not_power":
        arrays = {"re": re[:, :24], "im": im[:, :24]}
    elif case == "n_too_long":
        arrays = {"re": np.hstack([re, re]), "im": np.hstack([im, im])}
    elif case == "too_wide":
        re[2, 7] = 2048
    elif case == "im_too_wide":
        im[1, 0] = -2049
    elif case == "float":
        arrays["re"] = re.astype(float)
    elif case == "no_re":
        arrays = {"x": re}
    elif case == "shapes":
        arrays["im"] = im[:, :16]
    elif case == "one_d":
        arrays = {"re": re[0]}
    elif case == "empty":
        arrays = {"re": np.zeros((0, 32), dtype=np.int64)}
    run_rejected(capsys, tmp_path, "fft", TINY, arrays, words)


@pytest.mark.sim
@pytest.mark.xdist_group("butterfly-small")
def test_run_fft_on_verilator(capsys, tmp_path, build_root):
    rng = np.random.default_rng(3)
    re = rng.integers(-2048, 2048, size=(5, 32))
    im = rng.integers(-2048, 2048, size=(5, 32))
    re[1], im[1] = 2047, -2048                     # full-scale DC: saturates
    path = tmp_path / "in.npz"
    np.savez(path, re=re, im=im)
    out = tmp_path / "sub" / "out.npz"
    status, stdout, _ = run_cli(capsys, "run", "fft", "--set", *TINY, "--input", path,
                                "--output", out, "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "5 transforms, N=32" in stdout and "matches the model" in stdout
    timing = model.fft_array_cycles([32] * 5, TINY_CFG)
    with np.load(out) as result:
        want_re, want_im, scale = model.fft(re, im, TINY_CFG)
        np.testing.assert_array_equal(result["re"], want_re)
        np.testing.assert_array_equal(result["im"], want_im)
        np.testing.assert_array_equal(result["scale_log2"], scale)
        assert result["cycles"].dtype == np.int64
        np.testing.assert_array_equal(result["cycles"], timing["latency"])
        assert result["total_cycles"] == timing["total"]
        # the documented meaning: out × 2**scale_log2 ≈ numpy.fft.fft (away from saturation)
        approx = model.descale(result["re"] + 1j * result["im"], result["scale_log2"])
        exact = np.fft.fft(re + 1j * im)
        assert model.sqnr_db(approx[[0, 2, 3, 4]], exact[[0, 2, 3, 4]]) > 40


@pytest.mark.sim
@pytest.mark.xdist_group("butterfly-small")
def test_verify_butterfly(capsys, build_root):
    status, out, _ = run_cli(capsys, "verify", "butterfly", "--set", *TINY, "--seeds", "2",
                             "--sim", "verilator", "--build-root", build_root)
    assert status == 0, out
    assert "seed   0 verilator PASS" in out and "cycle model exact" in out
    assert "seed   1 verilator PASS" in out and "rates 0.7/0.6" in out
    assert "PASS: butterfly" in out and "2 runs" in out


# ---- run butterfly ---------------------------------------------------------------------------

@pytest.mark.parametrize("case, words", [
    ("no_twiddle", ["no twiddle array", "found x"]),
    ("twiddle_shape", ["twiddle has shape (5, 16, 2)", "(5, 16, 2, 2)", "N=32"]),
    ("twiddle_nan", ["NaN"]),
    ("x_too_wide", ["value 2048", "[-2048, 2047]"]),
    ("x_not_power", ["N=24", "power of two"]),
    ("fft_only", ["linear=0"]),
])
def test_run_butterfly_rejects_bad_inputs(capsys, tmp_path, case, words):
    rng = np.random.default_rng(1)
    x = rng.integers(-2048, 2048, size=(3, 32))
    twiddle = rng.normal(0, 0.7, (5, 16, 2, 2))
    sets = list(TINY)
    arrays = {"x": x, "twiddle": twiddle}
    if case == "no_twiddle":
        arrays = {"x": x}
    elif case == "twiddle_shape":
        arrays["twiddle"] = twiddle[..., 0]
    elif case == "twiddle_nan":
        twiddle[2, 3, 1, 0] = np.nan
    elif case == "x_too_wide":
        x[0, 0] = 2048
    elif case == "x_not_power":
        arrays["x"] = x[:, :24]
    else:
        sets.append("linear=0")
    run_rejected(capsys, tmp_path, "butterfly", sets, arrays, words)


@pytest.mark.sim
@pytest.mark.xdist_group("butterfly-small")
def test_run_butterfly_on_verilator(capsys, tmp_path, build_root):
    rng = np.random.default_rng(8)
    x = rng.integers(-2048, 2048, size=(4, 32))
    twiddle = rng.normal(0, 0.7, (5, 16, 2, 2))
    path = tmp_path / "in.npz"
    np.savez(path, x=x, twiddle=twiddle)
    out = tmp_path / "out.npz"
    status, stdout, _ = run_cli(capsys, "run", "butterfly", "--set", *TINY, "--input", path,
                                "--output", out, "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "4 rows, N=32" in stdout and "matches the model" in stdout
    shifts = model.butterfly_batch_shifts(x, twiddle, TINY_CFG)
    want, scale = model.butterfly(x, twiddle, TINY_CFG, scaling=shifts)
    with np.load(out) as result:
        np.testing.assert_array_equal(result["y"], want)
        np.testing.assert_array_equal(result["scale_log2"], scale)
        assert result["cycles"].shape == (4,) and result["total_cycles"] >= result["cycles"].max()
        approx = model.descale(result["y"], result["scale_log2"])
        assert model.sqnr_db(approx, model.butterfly_float(x, twiddle)) > 40


# ---- run fnet / verify fnet ------------------------------------------------------------------

@pytest.mark.parametrize("case, words", [
    ("no_x", ["no x array", "found re"]),
    ("one_d", ["L×D or B×L×D", "(16,)"]),
    ("l_not_power", ["L=12", "power of two", "n_max=32"]),
    ("too_big", ["L×D=1024", "frame_max=256"]),
    ("too_wide", ["x value -2049", "[-2048, 2047]"]),
])
def test_run_fnet_rejects_bad_inputs(capsys, tmp_path, case, words):
    rng = np.random.default_rng(2)
    x = rng.integers(-2048, 2048, size=(16, 8))
    sets = [*TINY, "frame_max=256"]
    arrays = {"x": x}
    if case == "no_x":
        arrays = {"re": x}
    elif case == "one_d":
        arrays = {"x": x[:, 0]}
    elif case == "l_not_power":
        arrays = {"x": x[:12]}
    elif case == "too_big":
        arrays = {"x": rng.integers(-2048, 2048, size=(32, 32))}
    else:
        x[3, 3] = -2049
    run_rejected(capsys, tmp_path, "fnet", sets, arrays, words)


@pytest.mark.sim
@pytest.mark.xdist_group("butterfly-fnet-tiny")
def test_run_and_verify_fnet_on_verilator(capsys, tmp_path, build_root):
    sets = [*TINY, "frame_max=256"]
    cfg = ButterflyConfig(width=12, twiddle_bits=12, n_max=32, lanes=2, frame_max=256)
    rng = np.random.default_rng(5)
    x = rng.integers(-2048, 2048, size=(16, 8))
    path = tmp_path / "in.npz"
    np.savez(path, x=x)
    out = tmp_path / "out.npz"
    status, stdout, _ = run_cli(capsys, "run", "fnet", "--set", *sets, "--input", path,
                                "--output", out, "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "1 frames of L×D=16×8" in stdout and "matches the model" in stdout
    want, scale = model.fnet(x, cfg)
    with np.load(out) as result:
        np.testing.assert_array_equal(result["y"], want)
        assert result["scale_log2"] == scale == 7
        assert result["cycles"] > 16 * 8 // 2 and result["total_cycles"] == result["cycles"]
        approx = model.descale(result["y"], result["scale_log2"])
        assert model.sqnr_db(approx, model.fnet_float(x)) > 30
    status, stdout, _ = run_cli(capsys, "verify", "fnet", "--set", *sets, "--seeds", "2",
                                "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "seed   1 verilator PASS" in stdout and "minilm" in stdout


# ---- run bffn / verify bffn / the bench's parts ----------------------------------------------

#: the configuration of tests/test_butterfly_rtl.py's FFN tests (one build for both files)
BFFN = ["width=16", "twiddle_bits=16", "n_max=32", "lanes=4"]
BFFN_CFG = ButterflyConfig(width=16, twiddle_bits=16, n_max=32, lanes=4)


def _bffn_bad_inputs():
    """Each bad-input case of ``run bffn``: its arrays, extra ``--set`` and the words of its error."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2048, 2048, size=(3, 32))
    tw1, tw2 = rng.normal(0, 0.7, (2, 5, 16, 2, 2))
    nan = tw1.copy()
    nan[1, 2, 0, 1] = np.nan
    good = {"x": x, "twiddle1": tw1, "twiddle2": tw2}
    return {
        "no_twiddle2": ({"x": x, "twiddle1": tw1}, [], ["no twiddle2 array", "found x, twiddle1"]),
        "twiddle2_shape": ({**good, "twiddle2": tw2[..., 0]}, [],
                           ["twiddle2", "(5, 16, 2)", "(5, 16, 2, 2)"]),
        "twiddle1_nan": ({**good, "twiddle1": nan}, [], ["NaN"]),
        "x_not_power": ({**good, "x": x[:, :24]}, [], ["N=24", "power of two"]),
        "fft_only": (good, ["linear=0"], ["linear=0"]),
    }


@pytest.mark.parametrize("case", list(_bffn_bad_inputs()))
def test_run_bffn_rejects_bad_inputs(capsys, tmp_path, case):
    arrays, sets, words = _bffn_bad_inputs()[case]
    run_rejected(capsys, tmp_path, "bffn", [*BFFN, *sets], arrays, words)


@pytest.mark.sim
@pytest.mark.xdist_group("butterfly-ffn")
def test_run_and_verify_bffn_on_verilator(capsys, tmp_path, build_root):
    rng = np.random.default_rng(9)
    x = rng.integers(-30000, 30000, size=(5, 32))
    tw1, tw2 = rng.normal(0, 0.7, (2, 5, 16, 2, 2))
    path = tmp_path / "in.npz"
    np.savez(path, x=x, twiddle1=tw1, twiddle2=tw2)
    out = tmp_path / "out.npz"
    status, stdout, _ = run_cli(capsys, "run", "bffn", "--set", *BFFN, "--input", path,
                                "--output", out, "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "bffn: 5 rows, N=32" in stdout and "matches the model" in stdout
    s1, s2 = model.ffn_batch_shifts(x, tw1, tw2, BFFN_CFG)
    want, scale = model.ffn(x, tw1, tw2, BFFN_CFG, scaling1=s1, scaling2=s2)
    with np.load(out) as result:
        assert sorted(result.files) == ["cycles", "scale_log2", "total_cycles", "y"]
        np.testing.assert_array_equal(result["y"], want)
        np.testing.assert_array_equal(result["scale_log2"], scale)
        assert result["cycles"].shape == (5,) and result["total_cycles"] >= result["cycles"].max()
        approx = model.descale(result["y"], result["scale_log2"])
        assert model.sqnr_db(approx, model.ffn_float(x, tw1, tw2)) > 50
    status, stdout, _ = run_cli(capsys, "verify", "bffn", "--set", *BFFN, "--seeds", "1",
                                "--sim", "verilator", "--build-root", build_root)
    assert status == 0, stdout
    assert "seed   0 verilator PASS" in stdout and "minilm" in stdout


def test_bench_part_rewrites_only_its_markers(tmp_path):
    """``attnforge bench butterfly --only PART --output F``: that part's markers inside the
    butterfly section, added at the section's end the first time; the rest untouched."""
    from attnforge.gen.bench_butterfly import _replace_part
    path = tmp_path / "B.md"
    path.write_text("# B\n\n## butterfly\n\n<!-- bench:butterfly -->\nold fft\n"
                    "<!-- /bench:butterfly -->\n\n## qk\n\nqk text\n")
    _replace_part(path, "bffn", "first")
    _replace_part(path, "bffn", "second")
    text = path.read_text()
    assert text == ("# B\n\n## butterfly\n\n<!-- bench:butterfly -->\nold fft\n"
                    "<!-- bench:butterfly-bffn -->\nsecond\n<!-- /bench:butterfly-bffn -->\n"
                    "<!-- /bench:butterfly -->\n\n## qk\n\nqk text\n")
