"""Attention freeze predictor: labels from CKA curves, model, training, metrics and checkpoints."""

from smartfrz.predictor.checkpoint import SCHEMA_VERSION, PredictorLoadError
from smartfrz.predictor.inference import FreezePredictor, load_predictor
from smartfrz.predictor.labels import LABEL_RULES, LabelRule, label_curves
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig

__all__ = [
    "LABEL_RULES",
    "SCHEMA_VERSION",
    "AttentionPredictorNet",
    "FreezePredictor",
    "LabelRule",
    "ModelConfig",
    "PredictorLoadError",
    "label_curves",
    "load_predictor",
]
