"""A function that keeps room for one call on the cluster, with no calls at all."""

from __future__ import annotations

import rayfn

app = rayfn.App("cluster-warm")


@app.function(cpu=1, min_containers=1)
def warm() -> None:
    """Never called: deploying it is what asks the autoscaler for a node."""
