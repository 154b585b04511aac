"""Scoring: the model manifest, the ONNX Runtime scorer and the micro-batcher in front of it."""

from .batcher import MicroBatcher
from .manifest import (
    BenignStat,
    Manifest,
    ModelError,
    ModelInputs,
    ModelOutputs,
    SchemaRef,
    ThresholdOverride,
    file_sha256,
    load_manifest,
    load_threshold_override,
)
from .model import Model, Scores, load_model

__all__ = [
    "BenignStat",
    "Manifest",
    "MicroBatcher",
    "Model",
    "ModelError",
    "ModelInputs",
    "ModelOutputs",
    "SchemaRef",
    "Scores",
    "ThresholdOverride",
    "file_sha256",
    "load_manifest",
    "load_model",
    "load_threshold_override",
]
