"""The trained network as an ONNX graph, loadable by onnxruntime."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.config import PARAMETER_NAMES
from model.export import FORWARD, Dtype

ONNX_OPSET = 17


def onnx_bytes(parameters: dict[str, float], dtype: Dtype) -> bytes:
    """A graph from x [N, 1] to y [N, 1], each parameter a named scalar initializer."""
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    initializers = [numpy_helper.from_array(np.array(parameters[k], dtype=dtype), name=k) for k in PARAMETER_NAMES]
    nodes = []
    for unit in ("1", "2"):
        nodes += [
            helper.make_node("Mul", ["x", f"w1{unit}"], [f"z{unit}_scaled"]),
            helper.make_node("Add", [f"z{unit}_scaled", f"b1{unit}"], [f"z{unit}"]),
            helper.make_node("Sigmoid", [f"z{unit}"], [f"s{unit}"]),
            helper.make_node("Mul", [f"s{unit}", f"w2{unit}"], [f"y{unit}"]),
        ]
    nodes += [helper.make_node("Add", ["y1", "y2"], ["y12"]), helper.make_node("Add", ["y12", "b2"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "tinytrain_1_2_1",
        [helper.make_tensor_value_info("x", elem, ["N", 1])],
        [helper.make_tensor_value_info("y", elem, ["N", 1])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="tinytrain")
    proto.doc_string = FORWARD
    onnx.checker.check_model(proto)
    serialized: bytes = proto.SerializeToString()
    return serialized
