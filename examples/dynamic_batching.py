# Dynamic batching, as Modal's @batched: callers send one input each, the function gets
# lists of up to max_batch_size inputs (waiting at most wait_ms for a batch to fill),
# and each caller gets its own result. Run it with `rayfn run examples/dynamic_batching.py`.
import rayfn as modal

app = modal.App("example-dynamic-batching")


@app.function()
@modal.batched(max_batch_size=8, wait_ms=200)
def embed(texts: list[str]) -> list[int]:
    # One invocation for the whole batch: where a model's forward pass would go.
    return [len(text) for text in texts]


@app.cls()
class Scaler:
    factor: int = modal.parameter(default=10)

    @modal.batched(max_batch_size=4, wait_ms=100)
    async def scale(self, xs: list[int], ys: list[int]) -> list[int]:
        return [self.factor * x + y for x, y in zip(xs, ys, strict=True)]


@app.local_entrypoint()
def main():
    words = ["ray", "modal", "batch", "of", "words"]
    print("lengths:", list(embed.map(words)))
    print("scaled:", list(Scaler(factor=100).scale.map([1, 2, 3], [4, 5, 6])))
