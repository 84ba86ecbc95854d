"""Variants of a deployed function: a class with parameter values, or a function or class
with options changed by ``with_options``.

Each variant has a queue and a container pool of its own, so its calls are spawned under
a name of their own: ``base~<code>``, where the code is the variant as canonical JSON in
URL-safe base64. The name stays safe in URLs, paths and logs, is the same for the same
parameter values and options however they were written, and the registry reads it
without unpickling anything.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from rayfn.exception import InvalidError
from rayfn.options import ClassSpec, FunctionOptions, Retries, check_parameter_value
from rayfn.protocol.names import validate_name

__all__ = ["SEPARATOR", "Variant", "check_params", "parse_target", "validate_target"]

SEPARATOR = "~"
MAX_CODE_CHARS = 4096

ParamValue = int | str | bool | bytes


@dataclasses.dataclass(frozen=True)
class Variant:
    """A function (``base``) with parameter values and option overrides, both sorted."""

    base: str
    params: tuple[tuple[str, ParamValue], ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def plain(self) -> bool:
        return not self.params and not self.overrides

    def name(self) -> str:
        """The name its calls are spawned under."""
        if self.plain:
            return self.base
        doc: dict[str, Any] = {}
        if self.params:
            doc["p"] = {k: ({"b": base64.b64encode(v).decode()} if isinstance(v, bytes) else v)
                        for k, v in self.params}
        if self.overrides:
            doc["o"] = dict(self.overrides)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        code = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        if len(code) > MAX_CODE_CHARS:
            raise InvalidError(f"the parameters and options of {self.base} take "
                               f"{len(code)} characters encoded; the limit is {MAX_CODE_CHARS}")
        return f"{self.base}{SEPARATOR}{code}"

    def options(self, base: FunctionOptions) -> FunctionOptions:
        """The base function's options with this variant's overrides."""
        if not self.overrides:
            return base
        changes = dict(self.overrides)
        if isinstance(changes.get("retries"), Mapping):
            changes["retries"] = Retries(**changes["retries"])
        return base.overridden(changes)

    def describe(self) -> str:
        """For people: ``Model(size=1)`` or ``f[cpu=2]``."""
        text = self.base
        if self.params:
            text += "(" + ", ".join(f"{k}={v!r}" for k, v in self.params) + ")"
        if self.overrides:
            text += "[" + ", ".join(f"{k}={v!r}" for k, v in self.overrides) + "]"
        return text


def overrides_of(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``with_options`` keywords as the JSON a variant carries (checked first)."""
    # Checked and normalized as at decoration (InvalidError names what is wrong), so that
    # cpu=2 and cpu=2.0 name one variant.
    built = FunctionOptions().overridden(options)
    normal = []
    for key in sorted(options):
        value = getattr(built, key)
        if isinstance(value, Retries):
            value = dataclasses.asdict(value)
        normal.append((key, value))
    return tuple(normal)


def check_params(spec: ClassSpec, given: Mapping[str, Any], where: str) -> tuple[
        tuple[str, ParamValue], ...]:
    """The values of a class's parameters, defaults filled in, sorted; InvalidError for
    an unknown name, a missing one or a value of the wrong type."""
    known = {p.name: p for p in spec.parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidError(f"{where} has no parameter {unknown[0]!r}"
                           + (f" (its parameters: {', '.join(known)})" if known else ""))
    values: dict[str, ParamValue] = {}
    for name, param in known.items():
        if name in given:
            values[name] = check_parameter_value(param, given[name])
        elif param.has_default:
            assert param.default is not None
            values[name] = param.default
        else:
            raise InvalidError(f"{where} needs a value for its parameter {name!r}")
    return tuple(sorted(values.items()))


def parse_target(name: str) -> Variant:
    """The variant a spawn target names (a plain function name is a plain variant)."""
    if not isinstance(name, str):
        raise InvalidError(f"function name must be a string, not {name!r}")
    base, sep, code = name.partition(SEPARATOR)
    validate_name("function", base)
    if not sep:
        return Variant(base)
    if not code or len(code) > MAX_CODE_CHARS:
        raise InvalidError(f"function {base!r}: the variant after {SEPARATOR!r} must be "
                           f"1 to {MAX_CODE_CHARS} characters")
    try:
        doc = json.loads(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: deep nesting
        raise InvalidError(f"function {base!r}: the variant after {SEPARATOR!r} is not "
                           "readable") from None
    if not isinstance(doc, dict) or set(doc) - {"p", "o"} \
            or not all(isinstance(doc.get(k, {}), dict) for k in ("p", "o")):
        raise InvalidError(f"function {base!r}: malformed variant")
    params: list[tuple[str, ParamValue]] = []
    for key, value in doc.get("p", {}).items():
        if isinstance(value, dict):
            try:
                value = base64.b64decode(value["b"], validate=True)
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise InvalidError(f"function {base!r}: malformed bytes parameter") from None
        if not isinstance(value, (int, str, bool, bytes)):
            raise InvalidError(f"function {base!r}: parameter {key!r} has no valid value")
        params.append((key, value))
    variant = Variant(base, tuple(sorted(params)), tuple(sorted(doc.get("o", {}).items())))
    if variant.name() != name:  # one name per variant: the canonical one
        raise InvalidError(f"function {base!r}: the variant is not in canonical form")
    return variant


def validate_target(name: str) -> str:
    """A spawn target: a function name, or a variant's name."""
    parse_target(name)
    return name
