"""Training the local AR: the loop, run folders, data. Apart from the runtime codec, which never
imports it."""
from .loop import train
from .runs import TrainConfig, export_run, model_from_run, resolve_model

__all__ = ["train", "TrainConfig", "export_run", "model_from_run", "resolve_model"]
