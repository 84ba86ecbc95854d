# Generator functions stream their values as they are yielded (remote_gen), and a call's
# graph shows the calls it spawned. Run it with `rayfn run examples/streaming.py`.
import rayfn as modal

app = modal.App("example-streaming")


@app.function()
def countdown(n: int):
    for i in range(n, 0, -1):
        yield f"{i}..."
    yield "liftoff"


@app.function()
def square(x: int) -> int:
    return x * x


@app.function()
def sum_of_squares(n: int) -> int:
    # Calls spawned here are this call's children in its call graph.
    return sum(modal.FunctionCall.gather(*(square.spawn(i) for i in range(n))))


@app.local_entrypoint()
def main():
    for line in countdown.remote_gen(3):
        print(line)
    call = sum_of_squares.spawn(4)
    print("sum:", call.get(timeout=60))
    (root,) = call.get_call_graph()
    print("children:", sorted(child.function_name for child in root.children))
