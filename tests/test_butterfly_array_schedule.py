"""The streaming FFT array's schedule (rtl/butterfly/schedule.py), replayed on numpy data.

No hardware here: each column's plan (which lanes pair, which twiddle, which slot holds which
index bit) is applied to a frame with the model's PE, and must give sim/butterfly.py's FFT
bit for bit; the reorder buffer's bank mapping must be conflict-free both ways.
"""

import numpy as np
import pytest

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.rtl.butterfly.schedule import ArraySchedule
from attnforge.sim import butterfly as B


def _replay(sched, log2n, re, im, cfg):
    """The FFT of one frame by the schedule: returns output (re, im) in natural order."""
    p, lanes = sched.p, sched.lanes
    n = 1 << log2n
    xr, xi = np.array(re, dtype=np.int64), np.array(im, dtype=np.int64)   # by x-index
    lane = list(range(p))
    time = [p + t for t in range(log2n - p)]

    def xindex(t_beat, l):
        return sum(((l >> m) & 1) << x for m, x in enumerate(lane)) + \
            sum(((t_beat >> t) & 1) << x for t, x in enumerate(time))

    for col, plan in zip(sched.columns, sched.plan(log2n)):
        if not plan.active:
            continue
        if plan.exchange is not None:
            time[plan.exchange], lane[p - 1] = lane[p - 1], time[plan.exchange]
        k, mb = plan.stage, col.lane_bit
        table = [cfg.twiddle(idx, 1 << (col.kmax + 1)) for idx in range(1 << col.kmax)]
        for t_beat in range(n // lanes):
            for l0 in range(lanes):
                if l0 >> mb & 1:
                    continue
                i0, i1 = xindex(t_beat, l0), xindex(t_beat, l0 | 1 << mb)
                assert i1 == i0 | 1 << (log2n - 1 - k)
                idx = 0
                for bit, src in enumerate(plan.twiddle_bits):
                    if src is not None:
                        kind, pos = src
                        idx |= (((l0 if kind == "lane" else t_beat) >> pos) & 1) << bit
                w = table[idx]
                (y0r, y0i), (y1r, y1i) = B.pe_fft((xr[i0], xi[i0]), (xr[i1], xi[i1]), w, 1, cfg)
                xr[i0], xi[i0], xr[i1], xi[i1] = y0r, y0i, y1r, y1i
    assert (tuple(lane), tuple(time)) == sched.final_map(log2n)
    # The value of sample identity i is output bin rev(i).
    rev = B.bit_reverse(n)
    outr, outi = np.zeros(n, np.int64), np.zeros(n, np.int64)
    outr[rev], outi[rev] = xr, xi
    return outr, outi, xindex


@pytest.mark.parametrize("lanes,n_max", [(2, 2), (2, 64), (4, 4), (4, 64), (8, 64), (8, 256),
                                         (16, 256)])
def test_schedule_replays_the_model_fft(lanes, n_max):
    cfg = ButterflyConfig(n_max=n_max, lanes=lanes)
    sched = ArraySchedule(lanes, n_max)
    assert len(sched.columns) == sched.log2n_max
    rng = np.random.default_rng(lanes * 1000 + n_max)
    for log2n in sched.log2n_range:
        n = 1 << log2n
        re = rng.integers(cfg.data_min, cfg.data_max + 1, n)
        im = rng.integers(cfg.data_min, cfg.data_max + 1, n)
        got_r, got_i, xindex = _replay(sched, log2n, re, im, cfg)
        want_r, want_i, _ = B.fft(re, im, cfg)
        assert np.array_equal(got_r, want_r) and np.array_equal(got_i, want_i), log2n

        # The reorder buffer: writes and reads each touch every bank once per beat, and a
        # read finds the sample the natural order wants.
        h, read = sched.reorder_map(log2n)
        rev = B.bit_reverse(n)
        for t_beat in range(n // lanes):
            hv = sum(((t_beat >> t) & 1) << mm for t, mm in h)
            assert sorted(lam ^ hv for lam in range(lanes)) == list(range(lanes))
            banks = []
            for l in range(lanes):
                bank, addr = read(t_beat, l)
                banks.append(bank)
                lam = bank ^ sum(((addr >> t) & 1) << mm for t, mm in h)
                assert rev[xindex(addr, lam)] == t_beat * lanes + l
            assert sorted(banks) == list(range(lanes))


def test_schedule_columns_and_delays():
    sched = ArraySchedule(8, 256)
    kinds = [c.kind for c in sched.columns]
    assert kinds == ["time"] * 5 + ["return"] + ["lane"] * 2
    assert [c.delay for c in sched.columns] == [16, 8, 4, 2, 1, 16, 0, 0]
    with pytest.raises(ValueError, match="lanes=1"):
        ArraySchedule(1, 64)
    with pytest.raises(ValueError, match="n_max=4"):
        ArraySchedule(8, 4)
