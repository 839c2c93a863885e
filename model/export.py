"""The trained network as a file another program runs: ONNX (model/onnx_file.py), a torch.export
program (model/torch_file.py), or JSON.

Each holds the seven parameters in the run's dtype and computes what `predict` computes."""

from typing import Any, Literal

from model.config import PARAMETER_NAMES

Format = Literal["onnx", "pt2", "json"]
Dtype = Literal["float32", "float64"]

FORWARD = "y = w21*s(w11*x+b11) + w22*s(w12*x+b12) + b2, s(z) = 1/(1+exp(-z))"
MEDIA_TYPES: dict[Format, str] = {
    "onnx": "application/onnx",
    "pt2": "application/zip",
    "json": "application/json",
}


def json_model(parameters: dict[str, float], dtype: Dtype) -> dict[str, Any]:
    return {
        "architecture": "1-2-1 sigmoid",
        "dtype": dtype,
        "parameters": {k: parameters[k] for k in PARAMETER_NAMES},
        "forward": FORWARD,
    }
