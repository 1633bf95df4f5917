"""artifactkit: a content-addressed store of versions, a compact YOLO trainer, resume from anywhere.

    import artifactkit
    store = artifactkit.open_store("./.artifactkit")
    artifactkit.log_dataset("./chess", store=store)  # -> chess:v0 (a data.yaml, COCO or any folder)
    artifactkit.pull(store, "chess:v0", "./restored")

Importing artifactkit imports neither torch nor wandb; training entry points load them on call.
"""

from .errors import (
    AlreadyExists,
    ArtifactkitError,
    BackendError,
    IntegrityError,
    InvalidInput,
    MissingExtra,
    NotFound,
)

# The store API is loaded on first use (PEP 562), so `import artifactkit` (and every CLI command's
# start-up) costs only what the caller touches: a command that lists versions never loads pull.
_LAZY = {
    "gc": "maintenance",
    "verify": "maintenance",
    "LogResult": "store",
    "Store": "store",
    "VersionInfo": "store",
    "open_store": "store",
    "pull": "transfer",
    "push": "transfer",
    "lineage": "lineage_graph",
    "log_dataset": "datasets",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'artifactkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"


def train(store: str | None = None, **options):
    """Train the detector and record the run in `store`; returns the finished RunRecord.
    Options are TrainConfig keys with its defaults (data=, epochs=, imgsz=, patience=, …), as the
    CLI's; progress goes to report=(event, details) or, by default, the `artifactkit` logger."""
    from .session import train as _train

    return _train(store, **options)


def resume(uri: str | None = None, **overrides):
    """Continue a run (`<store>/runs/<id>`) from its latest checkpoint; returns its RunRecord."""
    from .session import resume as _resume

    return _resume(uri, **overrides)


def predict(weights, sources, **options):
    """Boxes for images, folders or globs from trained weights (a run URI, a run id or NAME:VERSION
    in store=, or an exported .safetensors / .pt: refs.py); a list of inference.ImagePrediction.
    See artifactkit.inference.predict for the options (conf=, iou=, imgsz=, device=, batch=)."""
    from .inference import predict as _predict

    return _predict(weights, sources, **options)


def load_model(weights, **options):
    """A ready eval-mode model with its class names and training image size (a LoadedModel)
    from a run URI, a run id or NAME:VERSION in store=, or an exported .safetensors / .pt file."""
    from .weights import load_model as _load_model

    return _load_model(weights, **options)


__all__ = [
    "AlreadyExists",
    "ArtifactkitError",
    "BackendError",
    "IntegrityError",
    "InvalidInput",
    "MissingExtra",
    "NotFound",
    "LogResult",
    "Store",
    "VersionInfo",
    "gc",
    "lineage",
    "load_model",
    "log_dataset",
    "open_store",
    "predict",
    "pull",
    "push",
    "resume",
    "train",
    "verify",
    "__version__",
]
