"""Parameters of the top-k engine (rtl/topk.py, sim/topk.py, tb/topk.py)."""

import dataclasses

from ..config import BlockConfig, ConfigError, in_range, param, power_of_two

__all__ = ["TopKConfig"]


@dataclasses.dataclass(frozen=True)
class TopKConfig(BlockConfig):
    """The top-k engine's parameters.

    Scores are ``width``-bit signed integers arriving ``lanes`` per beat; a vector has
    ``N ≤ n_max`` scores (a multiple of ``lanes``) and its own ``k`` (1 ≤ k ≤ N). The select
    passes read ``comparators`` candidates per cycle and resolve ``radix_bits`` bits of the
    k-th largest value per pass, so a vector never needs more than
    ``levels - 1`` passes over at most ``N`` candidates.
    """

    width: int = param(16, "score bits (signed two's complement)", in_range(4, 32))
    n_max: int = param(1024, "longest vector (scores)", power_of_two(2, 65536))
    lanes: int = param(8, "scores per input and output beat", power_of_two(1, 64))
    comparators: int = param(16, "candidates compared per cycle in the select and output passes",
                             power_of_two(1, 128))
    radix_bits: int = param(4, "bits of the k-th value resolved per select pass", in_range(1, 6))

    def validate(self):
        if self.comparators < self.lanes:
            raise ConfigError(f"comparators={self.comparators} must be ≥ lanes={self.lanes}")
        if self.n_max < self.comparators:
            raise ConfigError(f"n_max={self.n_max} must be ≥ comparators={self.comparators}")
        if self.width < 2 * self.radix_bits:
            raise ConfigError(f"width={self.width} must be ≥ 2 × radix_bits={2 * self.radix_bits}")

    @property
    def levels(self):
        """Digits of ``radix_bits`` in a key: one histogram while receiving, the rest in passes."""
        return -(-self.width // self.radix_bits)

    @property
    def key_bits(self):
        return self.levels * self.radix_bits

    @property
    def buckets(self):
        return 1 << self.radix_bits

    @property
    def words(self):
        """Buffer words (``comparators`` scores each) per vector slot."""
        return self.n_max // self.comparators

    @property
    def emit_packer_depth(self):
        """Entries of the emit packer's ring: room for a full beat while about ``lanes`` a beat flow."""
        return self.EMIT_PACKER_RINGS * self.comparators

    @property
    def index_bits(self):
        return max(1, (self.n_max - 1).bit_length())

    @property
    def count_bits(self):
        return self.n_max.bit_length()

    def manifest_notes(self):
        return {
            "semantics": "keeps every score > the k-th largest, then the earliest ties until k; "
                         "output in input order with indices",
            "formats": {"scores": f"signed {self.width}-bit integer",
                        "k": "unsigned, read on a vector's first beat"},
            "latency": {"pass_drain": self.PASS_DRAIN, "last_pass_drain": self.LAST_PASS_DRAIN,
                        "first_pass_overlap": self.FIRST_PASS_OVERLAP,
                        "levels": self.levels, "note": "see sim/topk.py cycles() for the cycle model"},
        }

    # Fixed latencies of the pipeline, shared by the RTL and the cycle model.
    #: select pass: cycles after the last read until the pass's FIFO and histogram are complete
    PASS_DRAIN = 9
    #: emit stage: compacted beats between the zero eliminator and the packer (read credits;
    #: a credit comes back 12 cycles after its read, so fewer stall the reads)
    EMIT_FIFO_DEPTH = 12
    #: emit stage: ring entries of the output packer, in units of ``comparators``
    EMIT_PACKER_RINGS = 4
    #: last select pass (no FIFO to write): cycles after the last read until its histogram is complete
    LAST_PASS_DRAIN = 5
    #: select: cycles of the top digit's resolve that the first pass's reads overlap
    FIRST_PASS_OVERLAP = 2
