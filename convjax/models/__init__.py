"""Layer 4: the model zoo, one architecture family per file, built from ``convjax.nn``.

Every model is ``Model(input_shape, num_classes, *, rngs, ...knobs)`` with ``input_shape``
``(H, W, C)`` (one unbatched image) and is called on a batched NHWC array, returning
``(N, num_classes)`` logits. Knobs are constructor arguments and public attributes. The last
layer starts at zero (``head_scheme="zeros"``), so an untrained model predicts uniform
probabilities and its cross-entropy starts at ``ln(num_classes)``.
"""

from convjax.models.alexnet import AlexNet
from convjax.models.allcnn import AllCNNC
from convjax.models.dilated import DilatedContextNet
from convjax.models.lenet import LeNet5
from convjax.models.pattern import POOL_KINDS, PatternCNN
from convjax.models.resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    ResNet18,
    ResNet20,
    ResNet34,
    ResNet50,
    ResNet56,
)
from convjax.models.vgg import VGG, VGG11, VGG16

#: Every whole model by name: what a config's ``model.name`` may say. Blocks (``BasicBlock``,
#: ``Bottleneck``) are modules but not models, so they are not here.
MODELS = {
    "PatternCNN": PatternCNN,
    "LeNet5": LeNet5,
    "AlexNet": AlexNet,
    "VGG": VGG,
    "VGG11": VGG11,
    "VGG16": VGG16,
    "AllCNNC": AllCNNC,
    "ResNet": ResNet,
    "ResNet18": ResNet18,
    "ResNet34": ResNet34,
    "ResNet50": ResNet50,
    "CifarResNet": CifarResNet,
    "ResNet20": ResNet20,
    "ResNet56": ResNet56,
    "DilatedContextNet": DilatedContextNet,
}

__all__ = [
    "MODELS",
    "PatternCNN",
    "POOL_KINDS",
    "LeNet5",
    "AlexNet",
    "VGG",
    "VGG11",
    "VGG16",
    "AllCNNC",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "CifarResNet",
    "ResNet20",
    "ResNet56",
    "BasicBlock",
    "Bottleneck",
    "DilatedContextNet",
]
