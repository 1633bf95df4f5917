"""The wandb SDK, loaded lazily, and the few decisions made before talking to it: online or
offline, which project, and the wandb:// and wandb-artifact:// URIs.

API keys are only ever tested for presence here: never returned, logged or stored.
"""

from __future__ import annotations

import contextlib
import glob
import os
from typing import Any, Iterator

from ..errors import ArtifactkitError, BackendError, InvalidInput, missing_extra
from ..names import NAME_RE as _PART  # an entity, project or run id: our name grammar
from ..redact import redact_uri

RUN_SCHEME = "wandb-artifact://"  # a run on W&B: wandb-artifact://<entity>/<project>/<run-id>
MIRROR_SCHEME = "wandb://"  # a mirror target: wandb://<entity>/<project>
DEFAULT_PROJECT = "artifactkit"
DEFAULT_HOST = "https://api.wandb.ai"


def load() -> Any:
    """The wandb module, or MissingExtra naming the extra to install."""
    try:
        import wandb
    except ImportError:
        raise missing_extra("wandb", "wandb") from None
    return wandb


def credentials_found() -> bool:
    """True when wandb would find credentials on its own: the environment or ~/.netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth
    except ImportError:  # an SDK without that module: fall back to the standard netrc reader
        return _stdlib_netrc_has(host)
    try:
        return read_netrc_auth(host=host) is not None
    except Exception:  # a malformed netrc is wandb's to report when it is used; here it means "no"
        return False


def _stdlib_netrc_has(host: str) -> bool:
    import netrc
    from urllib.parse import urlsplit

    try:
        return netrc.netrc().authenticators(urlsplit(host).hostname or host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def choose_mode() -> tuple[str | None, bool]:
    """(mode to pass to wandb.init, True when we chose offline for the user). WANDB_MODE wins;
    with no credentials at all, offline rather than a login prompt in the middle of training."""
    if os.environ.get("WANDB_MODE"):
        return None, False
    if credentials_found():
        return None, False
    return "offline", True


def default_project() -> str | None:
    """None lets wandb read WANDB_PROJECT itself; otherwise one fixed name, so runs are easy to find."""
    return None if os.environ.get("WANDB_PROJECT") else DEFAULT_PROJECT


def sync_command(run_dir: str, run_id: str) -> str:
    """`wandb sync` for every offline folder of this run id next to run_dir, oldest first (a
    resumed offline run is a second folder with the same id; wandb syncs them in order)."""
    parent = os.path.dirname(os.path.abspath(run_dir))
    dirs = sorted(glob.glob(os.path.join(parent, f"offline-run-*-{glob.escape(run_id)}")))
    if os.path.abspath(run_dir) not in dirs:
        dirs.append(os.path.abspath(run_dir))
    return "wandb sync " + " ".join(dirs)


def parse_run_uri(uri: str) -> tuple[str, str, str]:
    """wandb-artifact://<entity>/<project>/<run-id> -> (entity, project, run id)."""
    parts = uri[len(RUN_SCHEME) :].strip("/").split("/") if uri.startswith(RUN_SCHEME) else []
    if len(parts) != 3 or not all(_PART.fullmatch(p) for p in parts):
        raise InvalidInput(
            f"invalid W&B run URI {redact_uri(uri)!r}: expected wandb-artifact://<entity>/<project>/<run-id>"
        )
    return parts[0], parts[1], parts[2]


def parse_mirror_uri(uri: str) -> tuple[str | None, str]:
    """wandb://<entity>/<project> (or wandb://<project> for your default entity) -> (entity, project)."""
    parts = uri[len(MIRROR_SCHEME) :].strip("/").split("/") if uri.startswith(MIRROR_SCHEME) else []
    if len(parts) not in (1, 2) or not all(_PART.fullmatch(p) for p in parts):
        raise InvalidInput(f"invalid W&B target {redact_uri(uri)!r}: expected wandb://<entity>/<project>")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def scrub(text: str) -> str:
    """Never let a key reach a message, whatever an SDK error chose to quote."""
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


@contextlib.contextmanager
def sdk_errors(what: str) -> Iterator[None]:
    """wandb's own exceptions (network, auth, usage) as one BackendError line naming `what`."""
    try:
        yield
    except ArtifactkitError:
        raise
    except Exception as e:  # the SDK boundary: any of its errors becomes our one-line error
        raise BackendError(f"{what} ({scrub(f'{type(e).__name__}: {e}')})") from None
