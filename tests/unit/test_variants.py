"""Variant names (a class's parameter values, with_options), class specs and the marks of
@method/@enter/@exit/@concurrent/@batched, without Ray."""

from __future__ import annotations

import pytest

import rayfn
from rayfn.cls import class_spec_of
from rayfn.exception import InvalidError
from rayfn.options import ClassSpec, FunctionOptions, ParameterSpec
from rayfn.protocol.variants import (
    Variant,
    check_params,
    overrides_of,
    parse_target,
    validate_target,
)

SPEC = ClassSpec(("run",), (ParameterSpec("size", "int", True, 1),
                            ParameterSpec("name", "str"),
                            ParameterSpec("flag", "bool", True, False),
                            ParameterSpec("blob", "bytes", True, b"\x00")))


def test_a_variant_name_round_trips_and_is_canonical() -> None:
    params = check_params(SPEC, {"name": "x", "blob": b"\xff\x00"}, "M")
    variant = Variant("M", params, overrides_of({"cpu": 2}))
    name = variant.name()
    assert name.startswith("M~") and validate_target(name) == name
    assert parse_target(name) == variant
    # The same values written another way name the same pool.
    again = Variant("M", check_params(SPEC, {"blob": b"\xff\x00", "name": "x", "size": 1}, "M"),
                    overrides_of({"cpu": 2.0}))
    assert again.name() == name
    assert parse_target("plain") == Variant("plain")


@pytest.mark.parametrize("bad", [
    "M~", "M~!!!", "M~" + "A" * 5000, "M~e30", "bad name~x", "M~WzFd",  # {} and [1]
])
def test_malformed_variant_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidError):
        parse_target(bad)


def test_a_deeply_nested_variant_is_refused() -> None:
    import base64

    doc = '{"p":' + "[" * 1400 + "]" * 1400 + "}"
    code = base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")
    with pytest.raises(InvalidError, match="not readable"):
        parse_target(f"M~{code}")


def test_a_variant_in_another_spelling_is_refused() -> None:
    import base64

    code = base64.urlsafe_b64encode(b'{"p": {"size": 1}}').decode().rstrip("=")
    with pytest.raises(InvalidError, match="canonical"):
        parse_target(f"M~{code}")


@pytest.mark.parametrize(("given", "match"), [
    ({}, "needs a value for its parameter 'name'"),
    ({"name": 3}, "must be a str"),
    ({"name": "x", "size": True}, "must be a int"),
    ({"name": "x", "size": 2**63}, "64 bits"),
    ({"name": "x" * 2000}, "limit"),
    ({"name": "x", "colour": "red"}, "no parameter 'colour'"),
])
def test_bad_parameter_values(given: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidError, match=match):
        check_params(SPEC, given, "class M")


def test_overrides_are_checked() -> None:
    assert overrides_of({"retries": 2})[0][1]["max_retries"] == 2
    for bad in ({"cpu": 0}, {"timeout": 10**9}, {"colour": 1}, {"max_inputs": 0}):
        with pytest.raises(InvalidError):
            overrides_of(bad)


def test_options_with_classes_round_trip_through_json() -> None:
    options = FunctionOptions.build(cls_spec=SPEC, max_inputs=4, target_inputs=2,
                                    scaledown_window=5, buffer_containers=1)
    assert FunctionOptions.from_dict(options.to_dict()) == options
    assert options.uses_containers and options.inputs_per_container == 2
    assert not FunctionOptions.build().uses_containers
    with pytest.raises(InvalidError, match="cannot be combined"):
        FunctionOptions.build(max_inputs=2, max_batch_size=4)
    with pytest.raises(InvalidError, match="target_inputs"):
        FunctionOptions.build(max_inputs=2, target_inputs=3)


def test_class_marks_and_their_bad_uses() -> None:
    class Good:
        size: int = rayfn.parameter(default=1)

        @rayfn.enter()
        def load(self) -> None: ...

        @rayfn.method()
        def run(self, x: int) -> int:
            return x

    spec, batching = class_spec_of(Good)
    assert spec.methods == ("run",) and spec.parameters[0].name == "size" and not batching

    class NoMethods:
        def helper(self) -> None: ...

    with pytest.raises(InvalidError, match="no @method"):
        class_spec_of(NoMethods)

    class Untyped:
        size = rayfn.parameter(default=1)

        @rayfn.method()
        def run(self) -> None: ...

    with pytest.raises(InvalidError, match="annotated"):
        class_spec_of(Untyped)

    class WithInit:
        size: int = rayfn.parameter(default=1)

        def __init__(self) -> None: ...

        @rayfn.method()
        def run(self) -> None: ...

    with pytest.raises(InvalidError, match="__init__"):
        class_spec_of(WithInit)

    class Mixed:
        @rayfn.method()
        def a(self) -> None: ...

        @rayfn.batched(max_batch_size=2, wait_ms=0)
        def b(self, xs: list[int]) -> list[int]:
            return xs

    with pytest.raises(InvalidError, match="cannot have other methods"):
        class_spec_of(Mixed)
    with pytest.raises(InvalidError, match="parentheses"):
        rayfn.method(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="wait_ms"):
        rayfn.batched(max_batch_size=2, wait_ms=10**9)


def test_decorators_under_app_and_spawn_checks() -> None:
    app = rayfn.App("unit-variants")

    @app.cls()
    class Model:
        size: int = rayfn.parameter(default=1)

        @rayfn.method()
        def predict(self, x: int) -> int:
            return x * self.size

    assert Model(size=3).predict.local(2) == 6
    with pytest.raises(InvalidError, match="wrong arguments"):
        Model().predict.spawn(1, 2, 3)
    with pytest.raises(InvalidError, match="is a class"):
        app.function()(Model.get_user_cls())

    @app.function()
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    with pytest.raises(InvalidError, match="generator"):
        gen.spawn(3)


def test_inputs_sent_ahead() -> None:
    from rayfn_service.pools import MAX_AHEAD, inputs_sent

    assert inputs_sent(1) == 2 and inputs_sent(100) == 125  # a quarter more, at least one
    assert inputs_sent(1, call_seconds=10.0) == 2  # long calls: one waits, no more
    assert inputs_sent(1, call_seconds=0.001) == 1 + MAX_AHEAD  # short: cover a round trip
    assert inputs_sent(4, call_seconds=0.01) == 4 + 5


def test_the_cli_shows_a_variant_as_people_write_it() -> None:
    from rayfn.cli.main import readable

    assert readable("f") == "f"
    assert readable(Variant("M", (("size", 1),), overrides_of({"cpu": 2})).name()) \
        == "M(size=1)[cpu=2.0]"
    assert readable("M~not-a-variant!") == "M~not-a-variant!"


def test_method_is_generator_must_match_the_method() -> None:
    def plain(self: object) -> int:
        return 1

    def yields(self: object):  # type: ignore[no-untyped-def]
        yield 1

    assert rayfn.method(is_generator=True)(yields) is yields
    with pytest.raises(InvalidError, match="does not yield"):
        rayfn.method(is_generator=True)(plain)
