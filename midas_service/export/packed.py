"""Convolutions with their batch norm, activation or residual add folded in, weights pre-packed.

Unfused, torch runs each convolution through oneDNN with the weights in plain layout, so
oneDNN reorders them on every call, and every ReLU6, ReLU and residual add is one more pass
over the activations. A :class:`PackedConvolution` keeps its weights in oneDNN's own layout
and runs ``mkldnn::_convolution_pointwise`` (the fused convolution PyTorch's own CPU compiler
emits), with the activation or the add as a post-op: the same numbers (the export's check),
12-25 % less time on two threads here (docs/performance.md), no per-shape compiled state.

The layout oneDNN picks for the weights can depend on the input size and the thread count,
so each convolution packs for the size it sees at the export's trace size. Other sizes give
the same numbers; where oneDNN wants another layout (a few convolutions, at some sizes), the
serving side packs those weights again for that size once and swaps them in
(``midas_service.inference.packed_layouts``), rather than let oneDNN convert them on every
call. The file stores plain weights (oneDNN's layout cannot be saved) and ``__setstate__``
packs them again when the serving side loads it. Export-side only, like the rest of
``midas_service.export``.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from midas_service.export.network import MidasSmall, ResidualConvUnit

# TorchScript's "number" (the op's Scalar) is spelled as this union in annotations. The class
# annotation below repeats it: TorchScript resolves aliases in method signatures only.
Scalars = list[int | float | complex | None]
POST_OPS: dict[type[nn.Module], tuple[str, list[float]]] = {
    nn.ReLU6: ("hardtanh", [0.0, 6.0]),
    nn.ReLU: ("relu", []),
    nn.Identity: ("none", []),
}


class PackedConvolution(nn.Module):
    """One convolution (+ folded batch norm) with an optional post-op, weights pre-packed."""

    scalars: list[int | float | complex | None]

    def __init__(
        self,
        conv: nn.Conv2d,
        input_size: list[int],
        norm: nn.BatchNorm2d | None = None,
        post_op: str = "none",
        scalars: list[float] | None = None,
    ) -> None:
        super().__init__()
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        if norm is not None:
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            weight = weight * scale.reshape(-1, 1, 1, 1)
            bias = (bias - norm.running_mean) * scale + norm.bias.detach()
        self.padding: list[int] = [int(p) for p in conv.padding]
        self.stride: list[int] = list(conv.stride)
        self.dilation: list[int] = list(conv.dilation)
        self.groups: int = conv.groups
        self.post_op: str = post_op
        self.scalars = list(scalars or [])
        self.input_size: list[int] = list(input_size)
        self.bias = bias.contiguous()
        self.weight = self._packed(weight.contiguous())

    def _packed(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, self.groups, self.input_size
        )

    @torch.jit.export
    def __getstate__(
        self,
    ) -> tuple[
        torch.Tensor, torch.Tensor, list[int], list[int], list[int], int, str, Scalars, list[int]
    ]:
        return (
            self.weight.to_dense(),
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.post_op,
            self.scalars,
            self.input_size,
        )

    @torch.jit.export
    def __setstate__(
        self,
        state: tuple[
            torch.Tensor,
            torch.Tensor,
            list[int],
            list[int],
            list[int],
            int,
            str,
            Scalars,
            list[int],
        ],
    ) -> None:
        self.bias = state[1]
        self.padding = state[2]
        self.stride = state[3]
        self.dilation = state[4]
        self.groups = state[5]
        self.post_op = state[6]
        self.scalars = state[7]
        self.input_size = state[8]
        self.training = False
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            state[0], self.padding, self.stride, self.dilation, self.groups, self.input_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self.weight,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.post_op,
            self.scalars,
            "",
        )

    @torch.jit.export
    def plus(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """convolution(x) + other, the add fused into the convolution."""
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            other,
            self.weight,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            "add",
            None,
            None,
            self.scalars[:0],
            None,
        )


class PackedResidualUnit(nn.Module):
    """:class:`ResidualConvUnit` with the inner ReLU and the residual add fused."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second.plus(self.first(F.relu(x)), x)


class ChannelsLast(nn.Module):
    """The network on a channels-last copy of its input: the layout the packed kernels use."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def packed_model(model: MidasSmall, example: torch.Tensor) -> nn.Module:
    """``model`` (plain convolutions: see ``unpadded_stride2_convs``) with every convolution
    packed, ready to trace. Convolutions that ``example`` does not reach are dropped."""
    sizes = _input_sizes(model, example)
    _pack_children(model, sizes)
    left = [name for name, _ in model.named_parameters()]
    if left:
        raise ValueError(f"parameters outside packed convolutions: {left[:5]}")
    return ChannelsLast(model).eval()


def _input_sizes(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, list[int]]:
    sizes: dict[nn.Module, list[int]] = {}

    def record(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        sizes[module] = list(inputs[0].shape)

    hooks = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return sizes


def _pack_children(parent: nn.Module, sizes: dict[nn.Module, list[int]]) -> None:
    children = list(parent.named_children())
    for index, (name, child) in enumerate(children):
        following = children[index + 1] if index + 1 < len(children) else (None, None)
        if isinstance(child, ResidualConvUnit):
            if child.conv1 not in sizes:  # never run (the deepest fusion block has no skip)
                setattr(parent, name, nn.Identity())
                continue
            first = PackedConvolution(child.conv1, sizes[child.conv1], post_op="relu")
            second = PackedConvolution(child.conv2, sizes[child.conv2])
            setattr(parent, name, PackedResidualUnit(_script(first), _script(second)))
        elif isinstance(child, nn.Conv2d):
            setattr(parent, name, _script(_packed_with_next(child, sizes[child], following[1])))
            if following[0] is not None and _foldable(following[1]):
                setattr(parent, following[0], nn.Identity())
        else:
            _pack_children(child, sizes)


def _foldable(module: nn.Module | None) -> bool:
    """timm's BatchNormAct2d (batch norm + activation) or a ReLU, folded into the convolution
    before it."""
    return type(module).__name__ == "BatchNormAct2d" or isinstance(module, nn.ReLU)


def _packed_with_next(
    conv: nn.Conv2d, size: list[int], following: nn.Module | None
) -> PackedConvolution:
    if type(following).__name__ == "BatchNormAct2d":
        post_op, scalars = POST_OPS[type(following.act)]
        return PackedConvolution(conv, size, following, post_op, scalars)
    if isinstance(following, nn.ReLU):
        return PackedConvolution(conv, size, post_op="relu")
    return PackedConvolution(conv, size)


def _script(module: PackedConvolution) -> torch.jit.ScriptModule:
    return torch.jit.script(module)
