"""GET /v1/jobs/{id}/model and /v1/sweeps/{id}/trials/{index}/model: the trained network as a
file to run elsewhere (ONNX, a torch.export program, or JSON)."""

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Response

from api.deps import JobDep, SessionDep, SweepDep, short_read
from api.errors import error
from api.routes.sweeps import Index
from jobs import sweeps
from jobs.errors import Conflict
from jobs.status import ACTIVE
from model import export

router = APIRouter(tags=["models"])

FormatQuery = Annotated[export.Format, Query(description="onnx, pt2 (a torch.export program) or json.")]
NO_RESULT = error(409, "The run has no result yet.")
FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            export.MEDIA_TYPES["onnx"]: {"schema": {"type": "string", "format": "binary"}},
            export.MEDIA_TYPES["pt2"]: {"schema": {"type": "string", "format": "binary"}},
            export.MEDIA_TYPES["json"]: {"schema": {"type": "object"}},  # architecture, dtype, parameters, forward
        },
        "description": "The model file, as an attachment.",
    }
}
# Building a program takes a good part of a second of CPU: a few at a time, off the event loop.
_BUILDS = anyio.CapacityLimiter(2)


def _build(parameters: dict[str, float], dtype: export.Dtype, format: export.Format) -> bytes:
    # onnx and torch are imported at the first export: together they take seconds to import,
    # which every start of serve would pay otherwise.
    if format == "onnx":
        from model import onnx_file

        return onnx_file.onnx_bytes(parameters, dtype)
    if format == "pt2":
        from model import torch_file

        return torch_file.pt2_bytes(parameters, dtype)
    return json.dumps(export.json_model(parameters, dtype)).encode()


async def _model_file(result: dict[str, Any], dtype: export.Dtype, format: export.Format, stem: str) -> Response:
    body = await anyio.to_thread.run_sync(_build, result["parameters"], dtype, format, limiter=_BUILDS)
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{format}"'}
    return Response(body, media_type=export.MEDIA_TYPES[format], headers=headers)


@router.get("/jobs/{job_id}/model", response_class=Response, responses={**FILE, **NO_RESULT})
async def job_model(job: JobDep, format: FormatQuery = "onnx") -> Response:
    """The job's trained network as a file: `onnx` (x [N, 1] to y [N, 1] in the job's dtype),
    `pt2` (for `torch.export.load`) or `json`; 409 until the job has a result."""
    if job.status in ACTIVE or job.result is None:
        raise Conflict(f"job {job.id} is {job.status}: there is a model once it has a result")
    return await _model_file(job.result, job.hyperparameters["dtype"], format, job.id)


@router.get("/sweeps/{sweep_id}/trials/{index}/model", response_class=Response, responses={**FILE, **NO_RESULT})
async def trial_model(sweep: SweepDep, index: Index, session: SessionDep, format: FormatQuery = "onnx") -> Response:
    """A trial's trained network as a file, as for a job; 409 until the trial has a result."""
    trial = await short_read(sweeps.trial, session, sweep.id, index)
    if trial.status in ACTIVE or trial.result is None:
        raise Conflict(f"trial {index} is {trial.status}: there is a model once it has a result")
    return await _model_file(trial.result, trial.hyperparameters["dtype"], format, f"{sweep.id}-{index}")
