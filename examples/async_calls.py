# Async functions, and the .aio form of each call for use inside async code, as in Modal.
# Run it with `rayfn run examples/async_calls.py`.
import asyncio

import rayfn as modal

app = modal.App("example-async-calls")


@app.function()
async def slow_square(x):
    # An async function is awaited on the worker; callers see no difference.
    await asyncio.sleep(0.5)
    return x * x


@app.function()
def add(a, b):
    return a + b


@app.local_entrypoint()
async def main():
    # In async code, await .remote.aio(...) rather than .remote(...): the event loop
    # keeps running while the call is on the cluster.
    print("remote:", await slow_square.remote.aio(4))

    # Several calls in flight at once.
    squares = await asyncio.gather(*(slow_square.remote.aio(i) for i in range(5)))
    print("gathered:", squares)

    # Spawn now, collect later.
    calls = [await add.spawn.aio(i, 10) for i in range(3)]
    print("spawned:", await modal.FunctionCall.gather.aio(*calls))

    # A parallel map, consumed with async for.
    total = 0
    async for value in slow_square.map.aio(range(10)):
        total += value
    print("map total:", total)
