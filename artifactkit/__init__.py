"""artifactkit: a content-addressed store of versions, a compact YOLO trainer, resume from anywhere.

    import artifactkit
    store = artifactkit.open_store("./.artifactkit")
    store.log_folder("./chess")                  # -> chess:v0
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
from .maintenance import gc, verify
from .store import LogResult, Store, VersionInfo, open_store
from .transfer import pull, push

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists", "ArtifactkitError", "BackendError", "IntegrityError", "InvalidInput",
    "MissingExtra", "NotFound", "LogResult", "Store", "VersionInfo", "gc", "open_store", "pull",
    "push", "verify", "__version__",
]
