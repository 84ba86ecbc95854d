"""The node view of ``rayfn status``, apart from Ray."""

from __future__ import annotations

from rayfn.cli.nodes import NodeView, holdings, id_width, nodes_table


def test_id_width_is_the_shortest_prefix_that_tells_nodes_apart() -> None:
    assert id_width([]) == 8
    assert id_width(["a" * 56, "b" * 56]) == 8
    # Ray's fake multi-node provider numbers its nodes in the last digits.
    fake = ["f" * 51 + "00000", "f" * 51 + "00001", "f" * 51 + "00012"]
    width = id_width(fake)
    assert len({n[:width] for n in fake}) == 3 and width == 56


def test_holdings_and_table_name_each_node_and_what_runs_there() -> None:
    node = NodeView(node_id="abcdef0123456789", address="10.0.0.2", alive=True, head=False,
                    total={"CPU": 4.0, "memory": 8 * 2**30},
                    available={"CPU": 1.0, "memory": 6 * 2**30},
                    running={"app.f": 2, "app.g": 1})
    assert holdings({"abcdef0123456789": 2}, 8) == "abcdef01: 2"
    table = nodes_table([node], 8)
    cells = [list(column.cells) for column in table.columns]
    assert [str(c[0]) for c in cells] == ["abcdef01", "10.0.0.2", "worker", "3/4", "-", "2/8",
                                     "app.f x2, app.g x1"]
