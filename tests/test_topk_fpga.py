"""A small top-k engine through Yosys and nextpnr for the iCEBreaker (the big builds are in bench)."""

from pathlib import Path

import pytest

from attnforge.configs.topk import TopKConfig
from attnforge.fpga.build import build
from attnforge.rtl.topk import TopK

pytestmark = [pytest.mark.fpga, pytest.mark.slow]


def test_icebreaker_build_reports_fmax(tmp_path):
    cfg = TopKConfig(width=8, n_max=64, lanes=2, comparators=4)
    report = build(TopK(cfg), "icebreaker", name="topk", build_dir=tmp_path, seed=1, progress=print)
    print(report.table())
    assert report.fmax_mhz > 0
    assert 0 < report.lut <= report.lut_limit
    assert report.bram > 0                      # the vector buffer and FIFOs map to block RAM
    assert Path(report.bitstream).is_file()
