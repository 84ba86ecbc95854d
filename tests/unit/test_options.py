"""Function options, images and app-level validation: all checked once, at decoration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rayfn import App, Image, Retries
from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions, WebEndpoint


def _invalid(option: str, **kwargs: Any) -> None:
    """``FunctionOptions.build(**kwargs)`` raises InvalidError naming ``option``."""
    with pytest.raises(InvalidError, match=option):
        FunctionOptions.build(**kwargs)


# ---- timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [1, 1.0, 300, 24 * 3600])
def test_timeout_within_bounds_is_accepted(timeout: float) -> None:
    assert FunctionOptions.build(timeout=timeout).timeout == float(timeout)


@pytest.mark.parametrize("timeout", [0, 0.5, -1, 86401, float("inf"), float("nan")])
def test_timeout_out_of_bounds_is_rejected(timeout: float) -> None:
    _invalid("timeout", timeout=timeout)


@pytest.mark.parametrize("timeout", ["60", None, True])
def test_timeout_must_be_a_number(timeout: Any) -> None:
    _invalid("timeout", timeout=timeout)


def test_default_options() -> None:
    options = FunctionOptions.build()
    assert options.timeout == 300.0
    assert options.retries is None
    assert options.min_containers == 0
    assert options.max_containers is None
    assert options.gpu == 0.0


# ---- containers --------------------------------------------------------------------


def test_min_containers_may_equal_max_containers() -> None:
    options = FunctionOptions.build(min_containers=2, max_containers=2)
    assert (options.min_containers, options.max_containers) == (2, 2)


def test_min_containers_above_max_containers_is_rejected() -> None:
    _invalid("min_containers", min_containers=3, max_containers=2)


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("max_containers", {"max_containers": 0}),
        ("max_containers", {"max_containers": 1.5}),
        ("max_containers", {"max_containers": True}),
        ("min_containers", {"min_containers": -1}),
        ("min_containers", {"min_containers": "1"}),
        ("min_containers", {"min_containers": 10**30}),
        ("min_containers", {"min_containers": 10_001}),
        ("max_containers", {"max_containers": 10**30}),
    ],
)
def test_container_counts_are_validated(option: str, kwargs: dict[str, Any]) -> None:
    _invalid(option, **kwargs)


# ---- retries -----------------------------------------------------------------------


def test_integer_retries_become_fixed_one_second_retries() -> None:
    options = FunctionOptions.build(retries=3)
    assert options.retries == Retries.fixed(3)
    assert options.retries.max_retries == 3
    assert [options.retries.delay(n) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]


def test_zero_retries_are_allowed() -> None:
    options = FunctionOptions.build(retries=0)
    assert options.retries is not None and options.retries.max_retries == 0


def test_retries_object_is_kept() -> None:
    retries = Retries(max_retries=5, backoff_coefficient=3.0, initial_delay=0.5)
    assert FunctionOptions.build(retries=retries).retries is retries


@pytest.mark.parametrize("retries", [-1, 1.5, "3", True])
def test_bad_retries_are_rejected(retries: Any) -> None:
    _invalid("retries", retries=retries)


def test_too_many_retries_are_rejected() -> None:
    _invalid("max_retries", retries=101)


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("backoff_coefficient", {"backoff_coefficient": 0.99}),
        ("backoff_coefficient", {"backoff_coefficient": 10.5}),
        ("initial_delay", {"initial_delay": -0.1}),
        ("initial_delay", {"initial_delay": 61}),
        ("max_delay", {"max_delay": 0.5}),
        ("max_delay", {"max_delay": 61}),
        ("max_delay", {"max_delay": "10"}),
        ("max_retries", {"max_retries": -1}),
        ("max_retries", {"max_retries": 2.0}),
    ],
)
def test_retries_bounds(option: str, kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"max_retries": 2, **kwargs}
    with pytest.raises(InvalidError, match=option):
        Retries(**fields)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff_coefficient": 1.0, "initial_delay": 0.0, "max_delay": 1.0},
        {"backoff_coefficient": 10.0, "initial_delay": 60.0, "max_delay": 60.0},
    ],
)
def test_retries_bounds_are_inclusive(kwargs: dict[str, float]) -> None:
    Retries(max_retries=1, **kwargs)


def test_retry_delays_grow_geometrically_and_are_capped() -> None:
    retries = Retries(max_retries=10, backoff_coefficient=2.0, initial_delay=1.0, max_delay=10.0)
    assert [retries.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_delay_starts_at_the_initial_delay() -> None:
    retries = Retries(max_retries=3, backoff_coefficient=3.0, initial_delay=0.5, max_delay=60)
    assert [retries.delay(n) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]


def test_retries_are_frozen() -> None:
    retries = Retries(max_retries=1)
    with pytest.raises(AttributeError):
        retries.max_retries = 2  # type: ignore[misc]


# ---- resources ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "count"),
    [
        (None, 0.0),
        (0, 0.0),
        (2, 2.0),
        ("T4", 1.0),
        ("any", 1.0),
        ("A100:2", 2.0),
        ("H100:8", 8.0),
    ],
)
def test_gpu_parsing(gpu: Any, count: float) -> None:
    assert FunctionOptions.build(gpu=gpu).gpu == count


@pytest.mark.parametrize(
    "gpu",
    ["", "   ", "A100:x", "A100:0", "A100:-1", -1, True, [], "A100:1e309", "A100:nan",
     "A100:257", 1e309, float("nan"), 257],
)
def test_bad_gpu_is_rejected(gpu: Any) -> None:
    _invalid("gpu", gpu=gpu)


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("cpu", {"cpu": 0}),
        ("cpu", {"cpu": -2}),
        ("cpu", {"cpu": "2"}),
        ("memory", {"memory": 0}),
        ("memory", {"memory": 1.5}),
        ("memory", {"memory": "512"}),
        ("cpu", {"cpu": 1e309}),
        ("cpu", {"cpu": float("nan")}),
        ("cpu", {"cpu": 1025}),
        ("memory", {"memory": 10**30}),
        ("memory", {"memory": 16 * 1024 * 1024 + 1}),
    ],
)
def test_bad_resources_are_rejected(option: str, kwargs: dict[str, Any]) -> None:
    _invalid(option, **kwargs)


def test_ray_options_default_to_one_cpu_and_nothing_else() -> None:
    assert FunctionOptions.build().ray_options() == {"num_cpus": 1.0}


def test_ray_options_map_cpu_memory_and_gpu() -> None:
    options = FunctionOptions.build(cpu=0.5, memory=512, gpu="A100:2")
    assert options.ray_options() == {
        "num_cpus": 0.5,
        "memory": 512 * 1024 * 1024,
        "num_gpus": 2.0,
    }


# ---- serialization -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"retries": 2, "timeout": 60, "max_containers": 4, "min_containers": 1},
        {
            "retries": Retries(max_retries=4, backoff_coefficient=1.5, initial_delay=0.0),
            "cpu": 2,
            "memory": 2048,
            "gpu": "T4",
        },
        {"timeout": 30, "web_endpoint": WebEndpoint(label="api")},
    ],
)
def test_to_dict_from_dict_round_trip_through_json(kwargs: dict[str, Any]) -> None:
    options = FunctionOptions.build(**kwargs)
    data = json.loads(json.dumps(options.to_dict()))
    assert FunctionOptions.from_dict(data) == options


# ---- images ------------------------------------------------------------------------


def test_debian_slim_is_the_cluster_environment() -> None:
    assert Image.debian_slim().runtime_env() == {}
    assert Image.debian_slim(python_version="3.11").runtime_env() == {}


def test_image_builders_make_a_runtime_env() -> None:
    image = (
        Image.debian_slim()
        .pip_install("requests==2.32.0", ["numpy", "pandas"])
        .env({"B": "2", "A": "1"})
        .env({"B": "3"})
    )
    assert image.runtime_env() == {
        "pip": ["requests==2.32.0", "numpy", "pandas"],
        "env_vars": {"A": "1", "B": "3"},
    }


def test_image_builders_do_not_modify_the_original() -> None:
    base = Image.debian_slim()
    base.pip_install("numpy").env({"A": "1"})
    assert base.runtime_env() == {}


def test_from_registry_names_the_container_image() -> None:
    image = Image.from_registry("python:3.11-slim", add_python="3.11").pip_install("rich")
    assert image.runtime_env() == {"image_uri": "python:3.11-slim", "pip": ["rich"]}


@pytest.mark.parametrize("tag", ["", "  ", None])
def test_from_registry_needs_a_tag(tag: Any) -> None:
    with pytest.raises(InvalidError, match="from_registry"):
        Image.from_registry(tag)


@pytest.mark.parametrize("package", ["", " ", 3])
def test_pip_install_rejects_bad_package_names(package: Any) -> None:
    with pytest.raises(InvalidError, match="pip_install"):
        Image.debian_slim().pip_install(package)


def test_env_rejects_non_string_values() -> None:
    with pytest.raises(InvalidError, match="env"):
        Image.debian_slim().env({"A": 1})  # type: ignore[dict-item]


# ---- App-level ---------------------------------------------------------------------


def test_bad_option_raises_at_decoration_time() -> None:
    app = App("options-test")
    with pytest.raises(InvalidError, match="timeout"):

        @app.function(timeout=0)
        def f() -> None: ...

    assert app.registered_functions == {}


def test_decorator_options_reach_the_function() -> None:
    app = App("options-test")

    @app.function(retries=2, timeout=30, gpu="T4")
    def f() -> int:
        return 1

    assert f.options == FunctionOptions.build(retries=2, timeout=30, gpu="T4")
    assert app.registered_functions == {"f": f}
    assert f.get_raw_f()() == 1


def test_two_functions_with_the_same_name_are_rejected() -> None:
    app = App("options-test")

    @app.function()
    def f() -> None: ...

    with pytest.raises(InvalidError, match="'f'"):

        @app.function(name="f")
        def g() -> None: ...

    assert app.registered_functions == {"f": f}


def test_decorating_a_function_twice_is_rejected() -> None:
    app = App("options-test")

    def f() -> None: ...

    function = app.function()(f)
    with pytest.raises(InvalidError, match="twice"):
        app.function()(function)


@pytest.mark.parametrize("name", ["my-job-queue", "a", "App_1.v2", "x" * 64])
def test_valid_app_names(name: str) -> None:
    assert App(name).name == name


def test_app_without_a_name_is_main() -> None:
    assert App().name == "main"


@pytest.mark.parametrize(
    "name",
    [
        "my app",
        "a/b",
        "../etc",
        "ünïcode",
        "日本",
        "-leading-dash",
        ".hidden",
        "trailing-newline\n",
        "x" * 65,
        "x" * 1000,
    ],
)
def test_bad_app_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidError, match="app name"):
        App(name)


def test_bad_function_name_is_rejected() -> None:
    app = App("options-test")
    with pytest.raises(InvalidError, match="function name"):
        app.function(name="bad name")(lambda: None)


def test_app_image_must_be_an_image() -> None:
    with pytest.raises(InvalidError, match="image"):
        App("options-test", image="python:3.11")  # type: ignore[arg-type]


def test_resource_shape_is_what_one_attempt_asks_of_ray() -> None:
    assert FunctionOptions.build().resource_shape() == {"CPU": 1.0}
    shape = FunctionOptions.build(cpu=2, memory=512, gpu="T4:2").resource_shape()
    assert shape == {"CPU": 2.0, "GPU": 2.0, "memory": 512 * 1024 * 1024}
