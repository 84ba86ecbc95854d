"""The app the own-cluster fault scenarios deploy with ``rayfn deploy``."""

import time

import rayfn

app = rayfn.App("fault-drill")


@app.function(retries=0, cpu=1, max_containers=8)
def work(i: int, log: str, seconds: float) -> int:
    import ray

    # One line per run, written before the work: a run killed mid-way still counts.
    with open(log, "a") as f:
        f.write(f"{i}\n")
    with open(log + ".nodes", "a") as f:
        f.write(f"{i} {ray.get_runtime_context().get_node_id()}\n")
    time.sleep(seconds)
    return i * 2
