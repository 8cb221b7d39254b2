"""The ``configs/default.py`` recipe written in PyTorch (CPU), for benchmarks only.

Same network (conv32-conv32-pool-conv64-conv64-pool-fc256-fc10, batch norm after every conv
and the hidden FC, convs and hidden FC without bias, no dropout), same optimizer (SGD with
Nesterov momentum 0.9, weight decay 5e-4 on kernels only), same one-cycle learning rate
(linear, peak 0.1 after 25% of the steps, start peak/10, end peak/1000), label smoothing 0.1,
batch 128, the same normalisation (training-split mean/std), the same per-epoch evaluation.
Only the framework differs (and its random numbers: initialisation and data order come from
``torch.manual_seed``, so accuracies match in distribution, not bit for bit).

``train(images, labels, test_images, test_labels, config)`` returns per-epoch records with the
wall time since the start of training (model building and the first step included).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TorchPatternCNN(nn.Module):
    """``[(conv-BN-ReLU) x convs_per_stage, maxpool] x len(widths), (FC-BN-ReLU) x K, FC``."""

    def __init__(self, input_shape, num_classes, widths=(32, 64), convs_per_stage=2,
                 fc_widths=(256,)):  # fmt: skip
        super().__init__()
        h, w, c = input_shape
        layers = []
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(c, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                c = width
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        head = [nn.Flatten()]
        d = c * h * w
        for width in fc_widths:
            head += [nn.Linear(d, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            d = width
        head.append(nn.Linear(d, num_classes))
        self.classifier = nn.Sequential(*head)
        for m in self.modules():  # He normal, as convjax's default scheme
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x))


def train(images, labels, test_images, test_labels, config, *, log=print):
    """Train the recipe of ``config`` (a ConfigDict like ``configs/default.py``'s).

    Args:
      images: ``(N, H, W, C)`` uint8 numpy; labels ``(N,)`` int. Same for the test split.

    Returns:
      list of ``{"epoch", "train_loss", "test_accuracy", "elapsed_s"}`` per epoch.
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    t_start = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))
    xt = torch.from_numpy(np.ascontiguousarray(test_images.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(test_labels.astype(np.int64))
    mean = x.float().div(255).mean(dim=(0, 2, 3), keepdim=True)
    std = x.float().div(255).std(dim=(0, 2, 3), unbiased=False, keepdim=True)

    def norm(u):
        return (u.float() / 255 - mean) / std

    m = config.model
    model = TorchPatternCNN(
        images.shape[1:], int(labels.max()) + 1, tuple(m.widths), m.convs_per_stage,
        tuple(m.fc_widths),
    )  # fmt: skip
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov,
    )  # fmt: skip
    bs = config.batch_size
    steps_per_epoch = len(y) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=config.learning_rate,
        total_steps=steps_per_epoch * config.num_epochs,
        pct_start=config.onecycle_pct_start,
        anneal_strategy="linear",
        div_factor=config.onecycle_div_factor,
        final_div_factor=config.onecycle_final_div_factor,
        cycle_momentum=False,
    )
    records = []
    for epoch in range(config.num_epochs):
        model.train()
        perm = torch.randperm(len(y))
        total = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            out = model(norm(x[idx]))
            loss = F.cross_entropy(out, y[idx], label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(yt), 1000):
                correct += int((model(norm(xt[i : i + 1000])).argmax(1) == yt[i : i + 1000]).sum())
        rec = {
            "epoch": epoch + 1,
            "train_loss": total / steps_per_epoch,
            "test_accuracy": correct / len(yt),
            "elapsed_s": time.perf_counter() - t_start,
        }
        records.append(rec)
        log(
            f"torch epoch {epoch + 1}: loss {rec['train_loss']:.4f} test acc "
            f"{100 * rec['test_accuracy']:.2f}% at {rec['elapsed_s']:.1f} s"
        )
    return records
