"""onnxruntime's column of `bench/latency.sh`: one call of an ONNX model (exported by
`nnlangc export --onnx`) at each batch on one thread (intra- and inter-op 1, sequential, every
graph optimization), microseconds per call from Python, median of `--runs` calls after a
warm-up; and the same for an Identity model of the same input (`onnxruntime_call`): what
Python's call into onnxruntime costs by itself, to take off.

Usage: python bench/onnxruntime_latency.py MODEL.onnx [--batch 1 64] [--runs 2000]
"""
import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def session(model_bytes):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, o, providers=["CPUExecutionProvider"])


def latency(s, x, runs):
    inp, out = s.get_inputs()[0].name, s.get_outputs()[0].name
    for _ in range(max(20, runs // 20)):
        s.run([out], {inp: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        s.run([out], {inp: x})
        times.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(times)


def main():
    # Other arguments (bench/side_by_side.sh passes the bench's own, `--model mlp`) are ignored.
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("model")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--runs", type=int, default=2000)
    a, _ = p.parse_known_args()
    s = session(open(a.model, "rb").read())
    i = s.get_inputs()[0]
    dims = [d if isinstance(d, int) else 1 for d in i.shape[1:]]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] + dims)
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] + dims)
    ident = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "call", [x_info], [y_info]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    call = session(ident.SerializeToString())
    print(f"# onnxruntime {ort.__version__}")
    for b in a.batch:
        x = np.random.default_rng(1).uniform(0, 1, size=[b] + dims).astype(np.float32)
        runs = a.runs if b == 1 else max(a.runs // 5, 50)
        print(f"onnxruntime threads=1 batch={b} us={latency(s, x, runs):.2f}")
        print(f"onnxruntime_call threads=1 batch={b} us={latency(call, x, runs):.2f}")


if __name__ == "__main__":
    main()
