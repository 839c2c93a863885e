"""tinytrain/wire.py states the engine's defaults and choices for the client, which installs
without the engine: they must stay model.config's."""

import dataclasses
import typing

from model.config import Device, Dtype, TrainConfig
from tinytrain import wire


def test_the_hyperparameters_defaults_are_the_engines() -> None:
    engine = dataclasses.asdict(TrainConfig())
    assert engine.pop("batch_size") == wire.DEFAULT_BATCH_SIZE  # the most that "not given" takes
    assert wire.Hyperparameters().model_dump(exclude={"batch_size"}) == engine


def test_the_dtypes_and_devices_are_the_engines() -> None:
    assert typing.get_args(wire.Dtype) == typing.get_args(Dtype)
    assert typing.get_args(wire.Device) == typing.get_args(Device)
