"""The trained network as a torch.export program, loadable with torch.export.load alone."""

import io

import torch

from model.export import Dtype


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
