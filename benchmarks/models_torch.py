"""PyTorch eager versions of the benchmark networks (the speed target of issue 8).

``TextbookCNN`` is conv32-conv32-pool-conv64-conv64-pool-fc256-fc10 (3x3 padding 1, ReLU,
2x2/2 max pooling) in NCHW, PyTorch's native layout. ``cnn_from_jax`` loads the parameter dict
of :func:`benchmarks.models_jax.cnn_params`, so a step of both runs the same numbers
(checked by the harness before it times anything). ``ResNet20`` is the CIFAR ResNet of He et
al. (2016) with option-A shortcuts (stride-2 subsampling and zero channels), BatchNorm in
training mode, as ``convjax.models.ResNet20``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TextbookCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(i, o, 3, padding=1) for i, o in ((1, 32), (32, 32), (32, 64), (64, 64))]
        )
        self.fc0 = nn.Linear(7 * 7 * 64, 256)
        self.fc1 = nn.Linear(256, 10)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in (1, 3):
                x = F.max_pool2d(x, 2)
        return self.fc1(F.relu(self.fc0(torch.flatten(x, 1))))


def cnn_from_jax(params) -> TextbookCNN:
    """A :class:`TextbookCNN` holding the numbers of a ``models_jax.cnn_params`` dict.

    Conv kernels HWIO -> OIHW; the first FC kernel's rows are reordered from the NHWC
    flatten order (h, w, c) of the JAX model to PyTorch's NCHW order (c, h, w).
    """
    model = TextbookCNN()
    with torch.no_grad():
        for i, conv in enumerate(model.convs):
            p = params[f"conv{i}"]
            conv.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)))
            conv.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
        k0 = np.asarray(params["fc0"]["kernel"]).reshape(7, 7, 64, -1).transpose(2, 0, 1, 3)
        model.fc0.weight.copy_(torch.from_numpy(np.ascontiguousarray(k0.reshape(3136, -1).T)))
        model.fc0.bias.copy_(torch.from_numpy(np.asarray(params["fc0"]["bias"])))
        model.fc1.weight.copy_(torch.from_numpy(np.asarray(params["fc1"]["kernel"]).T.copy()))
        model.fc1.bias.copy_(torch.from_numpy(np.asarray(params["fc1"]["bias"])))
    return model


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            # Option A: subsample, then append zero channels (as convjax.models.ResNet20).
            short = x[:, :, :: self.stride, :: self.stride]
            short = F.pad(short, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + short)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (3 stages x 3 basic blocks, widths 16/32/64), 10 classes."""

    def __init__(self, n=3, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(n):
                blocks.append(_Block(cin, width, 2 if stage and b == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_train_step(model, lr=0.01, momentum=0.9):
    """One eager step: forward, cross-entropy, backward, SGD-momentum update; returns loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step
