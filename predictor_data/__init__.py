"""The shipped predictors (checkpoints, reports, data cards): installed as package data ``smartfrz.predictor_data``."""
