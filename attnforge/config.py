"""Block parameters: one frozen dataclass per block, validated once, shared by rtl/sim/tb/gen.

A block's ``Config`` subclasses :class:`BlockConfig` and declares each parameter with
:func:`param`, which records its documentation and its allowed values. Construction checks
every parameter and raises :class:`ConfigError` naming the parameter, the value and what is
allowed, so the CLI (``--set name=value``) and Python callers get the same message.
"""

import dataclasses
import typing

__all__ = ["ConfigError", "BlockConfig", "param", "power_of_two", "in_range"]


class ConfigError(ValueError):
    """A parameter value outside its allowed range (the message names both)."""


def in_range(lo, hi=None):
    """Check ``lo <= value <= hi`` (``hi=None``: no upper bound)."""
    def check(value):
        return value >= lo and (hi is None or value <= hi)
    check.describe = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer ≥ {lo}"
    return check


def power_of_two(lo=1, hi=None):
    """Check that the value is a power of two within ``[lo, hi]``."""
    def check(value):
        return value >= lo and value & (value - 1) == 0 and (hi is None or value <= hi)
    check.describe = f"a power of two in [{lo}, {hi}]" if hi is not None else f"a power of two ≥ {lo}"
    return check


def param(default, doc, check=None):
    """Declare a parameter: its default, a one-line description and an optional range check."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Base of every block's Config: field checks, then the block's cross-field ``validate``."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = hints.get(field.name, int)
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{field.name} must be an integer, not {value!r}")
            check = field.metadata.get("check")
            if check is not None and not check(value):
                raise ConfigError(f"{field.name}={value!r} is out of range: expected {check.describe}")
        self.validate()

    def validate(self):
        """Cross-parameter checks; override and raise :class:`ConfigError`."""

    @classmethod
    def parameters(cls):
        """``{name: (default, doc, allowed)}`` for help texts and manifests."""
        return {f.name: (f.default, f.metadata.get("doc", ""),
                         getattr(f.metadata.get("check"), "describe", "any"))
                for f in dataclasses.fields(cls)}

    @classmethod
    def from_strings(cls, assignments, base=None):
        """Build from ``["name=value", ...]`` (the CLI's ``--set``), on top of ``base``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for item in assignments:
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep:
                raise ConfigError(f"--set expects name=value, not {item!r}")
            if name not in known:
                raise ConfigError(f"unknown parameter {name!r} for {cls.__qualname__}; "
                                  f"known: {', '.join(known)}")
            try:
                values[name] = int(text, 0)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, not {text!r}") from None
        return dataclasses.replace(base or cls(), **values)

    def as_dict(self):
        return dataclasses.asdict(self)

    def manifest_notes(self):
        """Block-specific manifest entries (formats, latency, semantics); override."""
        return {}
