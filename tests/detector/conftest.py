import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tensors here are tiny: intra-op threads only add synchronisation, which on a busy machine
    costs far more than the work (seconds instead of milliseconds)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
