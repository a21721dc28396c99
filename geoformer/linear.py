"""The network's linear layers, with their CPU products computed by oneDNN.

PyTorch's fp32 ``addmm`` on an x86 CPU calls MKL's sgemm. On AMD processors that sgemm
reaches about half of what oneDNN (bundled with torch) reaches on the same cores: a 4096 x
4096 product at 2 threads on an AMD EPYC took 178 GFLOP/s through ``torch.mm`` against 366
GFLOP/s through oneDNN, with the same fp32 arithmetic (docs/benchmarks.md). torch reaches
oneDNN's fp32 product only through ``torch.ops.mkldnn._linear_pointwise``, the op its own
compiler emits for CPU linear layers; there is no switch for eager fp32 matmuls
(``torch.backends.mkldnn.matmul.fp32_precision`` only admits lower precisions). So this
file routes them by hand:

- :func:`linear` is ``F.linear`` (optionally followed by the exact GELU), computed by oneDNN
  for contiguous fp32 CPU tensors, with GELU fused into the product when no gradient is
  taken. Its backward computes the input gradient with oneDNN too and the weight gradient
  with ``torch.mm`` (oneDNN was slower for the long reductions over tokens).
- :class:`Linear` is ``nn.Linear`` calling :func:`linear`: the same parameters, state-dict
  keys and initialisation.
- :class:`Mlp` is timm's ``Mlp`` layout (``fc1``, GELU, ``fc2``) on :class:`Linear`.

Everywhere else it is ``F.linear``: CUDA, other dtypes, CPU autocast, ``torch.compile``,
tracing, function transforms, dispatch modes (the FLOP counter counts the layers), forward
AD, a torch without the op. :func:`use_onednn` turns the route off, e.g. to compare.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.torch_version import TorchVersion
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ["linear", "Linear", "Mlp", "use_onednn", "onednn_enabled"]

_state = threading.local()  # the route's switch, per thread (like torch's grad mode)


def _op_available() -> bool:
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


_AVAILABLE = _op_available()

if TorchVersion(torch.__version__) >= "2.4":
    def _cpu_autocast() -> bool:
        return torch.is_autocast_enabled("cpu")
else:  # before 2.4 the device argument did not exist
    _cpu_autocast = torch.is_autocast_cpu_enabled


def _switch() -> bool:
    return getattr(_state, "enabled", True)


def onednn_enabled() -> bool:
    """Whether CPU fp32 linear layers go through oneDNN (available and not turned off)."""
    return _switch() and _AVAILABLE


@contextmanager
def use_onednn(enabled: bool) -> Iterator[None]:
    """Within the block (this thread), route CPU fp32 linear products through oneDNN or not.
    Activation checkpointing recomputes a block with the setting of its forward pass."""
    before, _state.enabled = _switch(), enabled
    try:
        yield
    finally:
        _state.enabled = before


def _transformed() -> bool:
    """Inside a torch function transform (vmap, grad, jvp), a dispatch mode (FLOP counter)
    or forward-mode AD, none of which sees through the oneDNN op."""
    return (torch._C._functorch.peek_interpreter_stack() is not None
            or _get_current_dispatch_mode() is not None
            or getattr(forward_ad, "_current_level", -1) >= 0)


def _routed(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return (_AVAILABLE and _switch() and isinstance(x, Tensor) and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.is_contiguous() and (bias is None or bias.shape == weight.shape[:1])
            and not torch.compiler.is_compiling() and not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
            and not _cpu_autocast()  # autocast casts F.linear's inputs
            and not _transformed())


def _product(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False) -> Tensor:
    # "gelu" with approximation "none" is the exact (erf) GELU of nn.GELU()
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """``F.linear`` forward and backward with the oneDNN product (see the module notes)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # each is needed only for the other's gradient
        ctx.save_for_backward(x if weight.requires_grad else None,
                              weight if x.requires_grad else None)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad2 = grad.reshape(-1, grad.shape[-1])  # (M, N)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # (M, N) @ (N, K): oneDNN with the weight's transpose
            gx = _product(grad2, weight.t().contiguous(), None).view(*grad.shape[:-1], -1)
        if ctx.needs_input_grad[1]:  # (N, M) @ (M, K)
            gw = grad2.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad2.sum(0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None,
           gelu: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)``, then the exact GELU if ``gelu``; oneDNN on the CPU."""
    if not _routed(x, weight, bias):
        y = F.linear(x, weight, bias)
        return F.gelu(y) if gelu else y
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))
    if not grad:
        return _product(x, weight, bias, gelu)
    y = _OneDnnLinear.apply(x, weight, bias)
    return F.gelu(y) if gelu else y


class Linear(nn.Linear):
    """``nn.Linear`` whose product goes through :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


class Mlp(nn.Module):
    """fc1, exact GELU, fc2: timm's ``Mlp`` (same parameter names), with the GELU fused into
    fc1's product where :func:`linear` can."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear(x, self.fc1.weight, self.fc1.bias, gelu=True))
