from __future__ import annotations

from typing import Any

import pytest

from rayfn.schemas import SpawnRequest, json_depth


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, 10, 64])
def test_depth_is_counted_in_lists_and_objects(depth: int) -> None:
    assert json_depth(_nested(depth), 64) == depth


def test_past_the_limit_is_a_value_error_even_far_past_the_stack() -> None:
    with pytest.raises(ValueError, match="more than 64"):
        json_depth(_nested(100_000), 64)


def test_the_deepest_branch_counts() -> None:
    assert json_depth([1, [2, [3]], {"a": {"b": []}}], 10) == 4


def test_spawn_arguments_past_the_limit_do_not_validate() -> None:
    SpawnRequest(args=[_nested(63)])
    with pytest.raises(ValueError, match="RAYFN_MAX_JSON_DEPTH"):
        SpawnRequest(args=[_nested(64)])
    with pytest.raises(ValueError, match="RAYFN_MAX_JSON_DEPTH"):
        SpawnRequest(kwargs={"x": _nested(64)})
