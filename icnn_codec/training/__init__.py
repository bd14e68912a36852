"""Training: the loop, run folders, data, and model surgery. Apart from the runtime codec, which
never imports it."""
from .loop import train
from .runs import TrainConfig, export_run, model_from_run, resolve_model

__all__ = ["train", "TrainConfig", "export_run", "model_from_run", "resolve_model"]
