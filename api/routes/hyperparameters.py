"""/v1/hyperparameters: what a job or sweep may set, with defaults, bounds and this service's
limits, read by the dashboard's forms (and any client) instead of a copy of them."""

from typing import Any, get_args

from fastapi import APIRouter

from api import schemas
from api.deps import OwnerDep
from jobs.hyperparameters import RANGES, SWEEPABLE
from jobs.settings import get_settings

router = APIRouter(tags=["hyperparameters"])


@router.get("/hyperparameters")
async def get_hyperparameters(owner: OwnerDep) -> schemas.HyperparameterSpec:
    """The JSON Schema of `hyperparameters` (each field's default and bounds; epochs' maximum is
    this service's), which of them a sweep may vary and draw from a range, `halving`'s schema and
    the limits."""
    settings = get_settings()
    schema: dict[str, Any] = schemas.Hyperparameters.model_json_schema()
    schema["properties"]["epochs"]["maximum"] = settings.max_epochs
    return schemas.HyperparameterSpec(
        json_schema=schema,
        halving=schemas.Halving.model_json_schema(),
        sweepable=list(SWEEPABLE),
        ranges={name: kind.__name__ for name, kind in RANGES.items()},
        objectives=list(get_args(schemas.Objective)),
        limits=schemas.Limits(
            max_points=settings.max_points,
            max_epochs=settings.max_epochs,
            max_work=settings.max_work,
            max_trials=settings.max_trials,
            max_body_bytes=settings.max_body_bytes,
        ),
    )
