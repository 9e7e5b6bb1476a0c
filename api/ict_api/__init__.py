"""ict's API: the ImageClassifierTraining spec and status, shared by operator and trainer."""

from ict_api.load import SpecError, load_document, load_env, load_file, validate_spec
from ict_api.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SHORT_NAME,
    Backbone,
    ImageClassifierTraining,
    ImageClassifierTrainingSpec,
    Strategy,
)
from ict_api.status import Condition, ImageClassifierTrainingStatus, Phase, Reason

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "Backbone",
    "Condition",
    "ImageClassifierTraining",
    "ImageClassifierTrainingSpec",
    "ImageClassifierTrainingStatus",
    "Phase",
    "Reason",
    "SpecError",
    "Strategy",
    "load_document",
    "load_env",
    "load_file",
    "validate_spec",
]
