"""The registry of generated blocks: how to build each, and its cached generation."""

import dataclasses
import hashlib
import json
from pathlib import Path

from ..configs.topk import TopKConfig
from .verilog import write_block

__all__ = ["Block", "BLOCKS", "generate"]


@dataclasses.dataclass(frozen=True)
class Block:
    name: str
    config: type
    summary: str

    def component(self, cfg):
        if self.name == "topk":
            from ..rtl.topk import TopK
            return TopK(cfg)
        raise KeyError(self.name)

    def manifest_extra(self, cfg):
        if self.name == "topk":
            return {
                "semantics": "keeps every score > the k-th largest, then the earliest ties until k; "
                             "output in input order with indices",
                "formats": {"scores": f"signed {cfg.width}-bit integer", "k": "unsigned, read on a vector's first beat"},
                "latency": {"pass_drain": cfg.PASS_DRAIN, "last_pass_drain": cfg.LAST_PASS_DRAIN,
                            "levels": cfg.levels, "note": "see sim/topk.py cycles() for the cycle model"},
            }
        return {}


BLOCKS = {
    "topk": Block("topk", TopKConfig, "SpAtten's top-k engine, pipelined and bounded"),
}


def _source_digest():
    """A digest of the code generation depends on, so a cached module never outlives its source."""
    import amaranth
    digest = hashlib.sha1(amaranth.__version__.encode())
    here = Path(__file__).resolve().parent
    for path in sorted([*(here.parent / "rtl").rglob("*.py"), *(here.parent / "attnforge").rglob("*.py"),
                        here / "verilog.py", Path(__file__).resolve()]):
        digest.update(path.read_bytes())
    return digest.digest()


def generate(name, cfg, build_root=None, out_dir=None):
    """Write ``<name>.sv`` and its manifest (cached by configuration); return both paths."""
    block = BLOCKS[name]
    if out_dir is None:
        key = hashlib.sha1(json.dumps(cfg.as_dict(), sort_keys=True).encode() + _source_digest()).hexdigest()[:12]
        out_dir = Path(build_root or "build") / "gen" / f"{name}-{key}"
        sv, manifest = out_dir / f"{name}.sv", out_dir / f"{name}.json"
        if sv.exists() and manifest.exists():
            return sv, manifest
    return write_block(block.component(cfg), name, out_dir, cfg.as_dict(), block.manifest_extra(cfg))
