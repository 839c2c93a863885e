"""The trained network as a file another program runs: ONNX, a torch.export program, or JSON.

Each holds the seven parameters in the run's dtype and computes what `predict` computes."""

import io
from typing import Any, Literal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from model.config import PARAMETER_NAMES

Format = Literal["onnx", "pt2", "json"]
Dtype = Literal["float32", "float64"]

FORWARD = "y = w21*s(w11*x+b11) + w22*s(w12*x+b12) + b2, s(z) = 1/(1+exp(-z))"
ONNX_OPSET = 17
MEDIA_TYPES: dict[Format, str] = {
    "onnx": "application/onnx",
    "pt2": "application/zip",
    "json": "application/json",
}


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


class Network(torch.nn.Module):
    """The 1-2-1 network: two sigmoid units between one input and one output."""

    def __init__(self, parameters: dict[str, float], dtype: Dtype) -> None:
        super().__init__()
        as_tensor = getattr(torch, dtype)
        self.hidden = torch.nn.Linear(1, 2, dtype=as_tensor)
        self.out = torch.nn.Linear(2, 1, dtype=as_tensor)
        with torch.no_grad():
            for tensor, values in (
                (self.hidden.weight, [[parameters["w11"]], [parameters["w12"]]]),
                (self.hidden.bias, [parameters["b11"], parameters["b12"]]),
                (self.out.weight, [[parameters["w21"], parameters["w22"]]]),
                (self.out.bias, [parameters["b2"]]),
            ):
                tensor.copy_(torch.tensor(values, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.sigmoid(self.hidden(x)))  # type: ignore[no-any-return]


def pt2_bytes(parameters: dict[str, float], dtype: Dtype) -> bytes:
    """A torch.export program taking x [N, 1] (any N) to y [N, 1]."""
    network = Network(parameters, dtype).eval()
    example = torch.zeros((2, 1), dtype=getattr(torch, dtype))
    program = torch.export.export(network, (example,), dynamic_shapes=({0: torch.export.Dim("N")},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def json_model(parameters: dict[str, float], dtype: Dtype) -> dict[str, Any]:
    return {
        "architecture": "1-2-1 sigmoid",
        "dtype": dtype,
        "parameters": {k: parameters[k] for k in PARAMETER_NAMES},
        "forward": FORWARD,
    }
