"""The one error hierarchy. The library raises these and never prints or exits; the CLI turns
them into one-line messages and exit codes (in cli/main.py)."""


class ArtifactkitError(Exception):
    """Base of every error artifactkit raises on purpose. The message names the thing at fault."""


class InvalidInput(ArtifactkitError):
    """A user-supplied value is wrong: a name, a path, a URI, a config key, a data file."""


class NotFound(ArtifactkitError):
    """A key, version, alias, run or file that does not exist."""


class AlreadyExists(ArtifactkitError):
    """A create-only write found the key already there."""


class BackendError(ArtifactkitError):
    """The storage system failed: unreachable, refused, out of space, bad credentials."""


class IntegrityError(ArtifactkitError):
    """Bytes do not match the digest that names them."""


class PeerFailed(ArtifactkitError):
    """Under torchrun, another training process failed first (and reports the cause itself)."""


class RunHeld(ArtifactkitError):
    """Another live process holds the run (a second resume of it), or took it over (lease.py)."""


class StoreBusy(ArtifactkitError):
    """A gc holds the store (a writer waits for it), or judged a paused writer gone (locks.py)."""


class MissingExtra(ArtifactkitError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def missing_extra(module: str, extra: str) -> MissingExtra:
    return MissingExtra(f"{module} is not installed: pip install 'artifactkit[{extra}]'")


def did_you_mean(word: str, known) -> str:
    """', did you mean X?' for the known key nearest to a mistyped one, or ''. A key the word
    begins comes first, in the listed order (lr -> lr0, not lrf: difflib scores them alike)."""
    import difflib

    known = list(known)
    match = [k for k in known if k.startswith(word)][:1] or difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f", did you mean {match[0]}?" if match else ""


class Stopped(KeyboardInterrupt):
    """Training stopped on request (a signal: SIGINT, SIGTERM, SIGUSR1) after saving where it
    stood. A KeyboardInterrupt, so code that handles Ctrl-C handles it; `signum` gives the CLI
    its exit status (128 + signum) and the message is the one line to print. `saved`: the state
    where it stopped was handed to the callbacks to save (False: stopped at once, without)."""

    def __init__(self, message: str, signum: int, saved: bool = False):
        super().__init__(message)
        self.signum, self.saved = signum, saved
