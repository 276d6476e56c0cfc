"""companion.device.pick_device: CUDA, then MPS, then CPU; COURSE_DEVICE or an argument forces one."""

import pytest
import torch

import companion
from companion.device import DEVICE_ENV_VAR, pick_device, small_model_threads

pytestmark = pytest.mark.usefixtures("no_course_device")


def fake_machine(monkeypatch, cuda: bool, mps: bool, cuda_count: int = 1) -> None:
    """Pretend the machine has (or lacks) CUDA and MPS; nothing is allocated, so no accelerator is needed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_env_var_name_is_the_documented_one():
    assert DEVICE_ENV_VAR == "COURSE_DEVICE"
    assert companion.pick_device is pick_device


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_order_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    fake_machine(monkeypatch, cuda=cuda, mps=mps)
    assert pick_device() == torch.device(expected)


def test_returns_a_torch_device():
    assert isinstance(pick_device(), torch.device)


def test_this_machine_without_accelerator_gets_the_cpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert pick_device() == torch.device("cpu")


def test_preferred_argument_forces_the_cpu_even_with_cuda(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=True)
    assert pick_device("cpu") == torch.device("cpu")


def test_env_var_forces_a_device(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert pick_device() == torch.device("cpu")


def test_argument_wins_over_env_var(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert pick_device("cuda") == torch.device("cuda")


def test_empty_env_var_means_automatic(monkeypatch):
    fake_machine(monkeypatch, cuda=False, mps=True)
    monkeypatch.setenv(DEVICE_ENV_VAR, "")
    assert pick_device() == torch.device("mps")


def test_indexed_cuda_device(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=False, cuda_count=2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)


def test_cuda_on_a_cpu_machine_is_a_clear_error(monkeypatch):
    fake_machine(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ValueError, match=r"preferred device 'cuda' is not available on this machine"):
        pick_device("cuda")


def test_mps_on_a_machine_without_it_is_a_clear_error(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=False)
    with pytest.raises(ValueError, match=r"preferred device 'mps' is not available"):
        pick_device("mps")


def test_env_var_naming_a_missing_device_is_an_error(monkeypatch):
    fake_machine(monkeypatch, cuda=False, mps=False)
    monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"'cuda' is not available"):
        pick_device()


def test_cuda_index_beyond_the_device_count(monkeypatch):
    fake_machine(monkeypatch, cuda=True, mps=False, cuda_count=1)
    with pytest.raises(ValueError, match=r"preferred device 'cuda:3': this machine has 1 CUDA device\(s\)"):
        pick_device("cuda:3")


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda:x", "tpu0"])
def test_unknown_device_name(name):
    with pytest.raises(ValueError, match=rf"preferred device '{name}' is not a device name such as 'cpu'"):
        pick_device(name)


def test_a_real_but_unsupported_device_type_is_refused():
    with pytest.raises(ValueError, match=r"preferred device 'meta' is not available"):
        pick_device("meta")


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_small_models_run_on_one_cpu_thread(restore_threads):
    torch.set_num_threads(2)
    assert small_model_threads(torch.device("cpu")) == 1
    assert torch.get_num_threads() == 1


def test_small_model_threads_leaves_accelerators_alone(restore_threads):
    torch.set_num_threads(2)
    assert small_model_threads(torch.device("cuda")) == 2
