# A class whose containers load a "model" once and serve many inputs, as Modal's
# @app.cls does: @enter runs once per container, state lives between inputs, @exit runs
# when the container scales down. Run it with `rayfn run examples/model_class.py`.
import os
import time

import rayfn as modal

app = modal.App("example-model-class")


@app.cls(max_containers=2, scaledown_window=5)
@modal.concurrent(max_inputs=4)
class Classifier:
    # Each set of parameter values gets containers of its own.
    threshold: int = modal.parameter(default=50)

    @modal.enter()
    def load(self):
        time.sleep(1)  # stands for loading weights: paid once per container
        self.loaded_by = os.getpid()
        self.seen = 0

    @modal.method()
    def classify(self, score: int) -> str:
        self.seen += 1
        return "high" if score >= self.threshold else "low"

    @modal.method()
    def served(self) -> int:
        return self.seen

    @modal.exit()
    def unload(self):
        print(f"container {self.loaded_by} served {self.seen} inputs")


@app.local_entrypoint()
def main():
    strict = Classifier(threshold=90)
    print("default:", list(Classifier().classify.map([10, 60, 95])))
    print("strict:", list(strict.classify.map([10, 60, 95])))
    call = strict.classify.spawn(99)
    print("spawned:", modal.FunctionCall.from_id(call.object_id).get(timeout=60))
