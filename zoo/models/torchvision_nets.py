"""torchvision ImageNet architectures: ResNet18, MobileNetV3-Small, EfficientNetV2-S.

- Report 001 (Sobieski & Olejnik, experiment IV) fine-tunes all three from ImageNet weights,
  replacing the last classification layer by a randomly initialised 10-way linear layer, at the
  models' own input sizes (their torchvision transforms: 224 px for MobileNetV3-S and ResNet18,
  384 px for EfficientNetV2-S). The authors' code (sobieskibj/deep-learning_project-1,
  experiments/_4/exp.py) freezes the pretrained layers (`feature_extract=True`) and trains only the
  new head; `freeze_backbone=True` reproduces that.
- Report 002 (Beraldi & Miesbauer, §4.1) trains torchvision's ResNet18 from scratch with a 10-way
  output, otherwise unchanged (ImageNet stem and all) on 32x32 inputs.

All three run on 32x32 inputs too (the feature map shrinks to 1x1 before the global pooling), so
the same networks serve both recipes. The state-dict keys are the same with or without ImageNet
initialisation, so trained weights load into a network built with `pretrained=False`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.errors import CifarzooError
from zoo.registry import register_model


def _classifier_slot(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the final linear layer."""
    if hasattr(model, "fc"):  # ResNet
        return model, "fc"
    return model.classifier, str(len(model.classifier) - 1)  # MobileNetV3, EfficientNet: Sequential


def _create(architecture: str, tv_builder: str, pretrained: bool, weights_file: str | None,
            freeze_backbone: bool, num_classes: int) -> nn.Module:
    from torchvision import models

    build: Any = getattr(models, tv_builder)
    if not pretrained:
        if weights_file:
            raise CifarzooError(f"{architecture}: weights_file is only used with pretrained=True.")
        model = build(num_classes=num_classes)
    else:
        from zoo.pretrained import load_imagenet_state_dict

        model = build(num_classes=1000)
        state, source = load_imagenet_state_dict(architecture, weights_file)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CifarzooError(f"ImageNet weights {source} do not fit {architecture} (wrong keys or shapes); "
                                "pass the file named by torchvision for this architecture.") from err
        parent, attr = _classifier_slot(model)
        old = getattr(parent, attr)
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))  # the new, randomly initialised head
    if freeze_backbone:
        parent, attr = _classifier_slot(model)
        head = getattr(parent, attr)
        for p in model.parameters():
            p.requires_grad_(False)
        head.requires_grad_(True)
    return model


@register_model()
def resnet18(pretrained: bool = False, weights_file: str | None = None, freeze_backbone: bool = False,
             num_classes: int = 10) -> nn.Module:
    """torchvision ResNet18 with a 10-way head; `pretrained` starts from ImageNet-1k weights."""
    return _create("resnet18", "resnet18", pretrained, weights_file, freeze_backbone, num_classes)


@register_model()
def mobilenetv3_small(pretrained: bool = False, weights_file: str | None = None, freeze_backbone: bool = False,
                      num_classes: int = 10) -> nn.Module:
    """torchvision MobileNetV3-Small with a 10-way head; `pretrained` starts from ImageNet-1k weights."""
    return _create("mobilenetv3-small", "mobilenet_v3_small", pretrained, weights_file, freeze_backbone,
                   num_classes)


@register_model()
def efficientnetv2_s(pretrained: bool = False, weights_file: str | None = None, freeze_backbone: bool = False,
                     num_classes: int = 10) -> nn.Module:
    """torchvision EfficientNetV2-S with a 10-way head; `pretrained` starts from ImageNet-1k weights."""
    return _create("efficientnetv2-s", "efficientnet_v2_s", pretrained, weights_file, freeze_backbone,
                   num_classes)
