"""Where training runs: the run config's `device` resolved to a torch.device, and what the training
stages share on it (host -> device moves per batch, bf16 autocast where it is safe).

One code path for every device: a stage takes a `Compute` (default: the CPU, fp32) and runs the
same function on it. On the CPU nothing is copied and nothing is cast. Data stays uint8 on the
host and moves one batch at a time (pinned memory + non_blocking on CUDA); models come back on the
CPU, so packaging, pyfunc loading, export and evaluation in the simulators (CPU, per step) do not
change.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from dreamops.tasks.config import DEVICES, check_device_name

__all__ = ["CPU", "DEVICES", "Compute", "DeviceUnavailableError", "adam", "check_device_name", "resolve_device"]

M = TypeVar("M", bound=torch.nn.Module)


class DeviceUnavailableError(ValueError):
    """The run asked for a device this machine does not have (a bad input, said in one line)."""


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when torch sees a CUDA device, else cpu; `cuda` without one is a clear error
    here, before any training, not a crash deep in torch."""
    check_device_name(name)
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        built = torch.version.cuda
        raise DeviceUnavailableError(
            "device=cuda was asked for, but torch sees no CUDA device on this machine ("
            + (f"torch {torch.__version__} is built for CUDA {built}: check the driver and CUDA_VISIBLE_DEVICES"
               if built else f"torch {torch.__version__} is a CPU-only build")
            + "); use --set device=auto or --set device=cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and cuda) else "cpu")


@dataclass(frozen=True)
class Compute:
    """A device and whether the stages' bf16-safe parts autocast to bf16 there. Losses are always
    computed in fp32 (the models cast back before their loss terms)."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False

    @classmethod
    def resolve(cls, device: str, bf16: bool = True) -> "Compute":
        """From the run config: bf16 autocast only on CUDA (CPU training stays fp32, bit for bit)."""
        d = resolve_device(device)
        return cls(d, bf16=bf16 and d.type == "cuda")

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    def put(self, x: torch.Tensor) -> torch.Tensor:
        """One batch from the host to the device: pinned and asynchronous on CUDA; the tensor itself
        on the CPU (no copy)."""
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def put_all(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.put(v) for k, v in batch.items()}

    def module(self, module: M) -> M:
        """A module to run on the device: the module itself on the CPU, else a copy there (the
        caller's CPU module is left as it is)."""
        return module if self.is_cpu else copy.deepcopy(module).to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the device when enabled, else nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def tags(self) -> dict[str, str]:
        """What a run records about where it trained (MLflow run tags)."""
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"device": str(self.device), "device.name": name, "device.bf16": str(self.bf16).lower()}


CPU = Compute()


def adam(params, *, weight_decay_decoupled: bool = False, **kwargs) -> torch.optim.Optimizer:
    """The training stages' optimiser: Adam (AdamW with `weight_decay_decoupled`) as torch's fused
    kernel, one pass over each parameter per step on the CPU as on CUDA. torch's default on the CPU
    loops over the parameters in Python with several elementwise passes over each: on V's 4.3M
    parameters its step took 18-21 ms against 3.6-4.0 ms fused, and V's whole training step gained
    3-8%, M's 10-12% (bench/bench_fused_adam.py). The same update up to float rounding
    (tests/tasks/test_device.py)."""
    cls = torch.optim.AdamW if weight_decay_decoupled else torch.optim.Adam
    return cls(params, fused=True, **kwargs)
