"""One backbone interface: an image goes in, a pyramid of NCHW feature maps comes out.

    backbone = build_backbone("small_cnn")
    features = backbone(images)            # images (B, 3, H, W), raw RGB in [0, 1]
    features[i].shape == (B, backbone.channels[i], H / backbone.strides[i], W / backbone.strides[i])

Maps come shallow to deep, always NCHW, and the backbone normalises the images itself
(datasets hand out raw [0, 1] images). A model picks its levels by stride with
``backbone.level(stride)``, so the same model runs on any backbone.

The names, and the paper each stands for:

================== ====================================== =====================================
name               timm model (``features_only=True``)    used by
================== ====================================== =====================================
small_cnn          written below, strides 2..32           the ``quick`` profile (CPU, minutes)
dpn92              ``dpn92``                              DMN (strides 2..32, 64..2688 ch.)
resnet101_deeplab  ``resnet101``, ``output_stride=8``     CMSA (DeepLab ResNet-101, dilated)
darknet53          ``darknet53``                          MCN (YOLOv3's Darknet-53)
vgg16              ``vgg16``                              MCN's VGG-16 variant; LSTM-CNN
swin_tiny          ``swin_tiny_patch4_window7_224``       transformer-era models (small)
swin_base          ``swin_base_patch4_window12_384``      transformer-era models (Swin-B)
resnet18, resnet50 ``resnet18``, ``resnet50``             handy for tests and small runs
timm:<name>        any timm model with ``features_only``  experiments
================== ====================================== =====================================

Notes on the timm backbones:

- Normalisation uses the mean and std the weights were trained with (timm's pretrained
  config): ImageNet's for all but ``dpn92``, whose MXNet weights expect their own values.
- ``resnet101_deeplab`` has timm's ImageNet weights, not the COCO-trained DeepLab weights of
  CMSA's official code; with output stride 8 its last three maps are all at stride 8.
- ``vgg16`` and ``darknet53`` start with a map at stride 1 (VGG's first block has no
  pooling; Darknet-53's stem has stride 1): six levels.
- Swin: timm's Swin returns NHWC maps; they are permuted to NCHW here. We build it with
  ``dynamic_img_size=True``, so any input size works: timm pads every stage to a multiple of
  the window (7 for Swin-T, 12 for Swin-B) and builds the shifted-window masks at each forward.
  Sides divisible by 32 (patch 4 times three 2x merges) keep every map at exactly H / stride;
  other sizes give ceil(H / stride). The weights were pretrained at 224 (Swin-T) and 384
  (Swin-B); pass ``img_size=...`` and ``dynamic_img_size=False`` for timm's fixed-size path.

Pretrained weights come from the Hugging Face Hub (``timm/<model>.<tag>``) through its local
cache. With no internet and no cached copy, ``build_backbone(..., pretrained=True)`` raises a
``RuntimeError`` that names the weights and says how to get them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Normalise [0, 1] images, return NCHW feature maps from shallow to deep.

    ``channels[i]`` and ``strides[i]`` describe ``forward(images)[i]``. Subclasses implement
    ``forward_features`` on normalised images.
    """

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        self.channels: list[int] = list(channels)
        self.strides: list[int] = list(strides)
        # Not persistent: state dicts hold weights only, and the constants follow .to(device).
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(images.shape)}"
            )
        return self.forward_features((images - self.mean) / self.std)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def level(self, stride: int | None = None) -> int:
        """Index of the deepest map at ``stride``; the deepest map of all when ``None``."""
        if stride is None:
            return len(self.strides) - 1
        if stride not in self.strides:
            raise ValueError(
                f"this backbone has no feature map at stride {stride}; its strides: "
                f"{self.strides} (choose one of them, or out_indices that include it)"
            )
        return max(i for i, s in enumerate(self.strides) if s == stride)


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Backbone):
    """Five stages, each (conv3x3 stride 2, BN, ReLU, conv3x3, BN, ReLU): strides 2, 4, ..., 32.

    Only the stages up to the deepest requested one are built, so every parameter is used.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 96, 128),
        out_indices: Sequence[int] | None = None,
    ):
        out_indices = tuple(range(len(widths))) if out_indices is None else tuple(out_indices)
        if not out_indices or any(not 0 <= i < len(widths) for i in out_indices):
            raise ValueError(f"out_indices {out_indices} must index the {len(widths)} stages")
        super().__init__([widths[i] for i in out_indices], [2 ** (i + 1) for i in out_indices])
        self.out_indices = out_indices
        c_in, stages = 3, []
        for c_out in widths[: max(out_indices) + 1]:
            stages.append(nn.Sequential(conv_bn_relu(c_in, c_out, 2), conv_bn_relu(c_out, c_out)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)  # (B, widths[i], H / 2^(i+1), W / 2^(i+1))
            features.append(x)
        return [features[i] for i in self.out_indices]


class TimmBackbone(Backbone):
    """A timm ``features_only`` model behind the interface (NHWC maps permuted to NCHW)."""

    def __init__(self, body: nn.Module):
        config = getattr(body, "pretrained_cfg", None) or {}
        super().__init__(
            body.feature_info.channels(),
            body.feature_info.reduction(),
            config.get("mean", IMAGENET_MEAN),
            config.get("std", IMAGENET_STD),
        )
        self.body = body
        output_format = getattr(body, "output_fmt", "NCHW")
        self.channels_last = str(getattr(output_format, "value", output_format)) == "NHWC"

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = list(self.body(x))
        if self.channels_last:  # Swin: (B, h, w, C) -> (B, C, h, w)
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return features


class _TimmSpec(NamedTuple):
    timm_name: str
    kwargs: dict
    used_by: str


TIMM_BACKBONES: dict[str, _TimmSpec] = {
    "dpn92": _TimmSpec("dpn92", {}, "DMN"),
    "resnet101_deeplab": _TimmSpec("resnet101", {"output_stride": 8}, "CMSA"),
    "darknet53": _TimmSpec("darknet53", {}, "MCN"),
    "vgg16": _TimmSpec("vgg16", {}, "MCN (VGG variant), LSTM-CNN"),
    "swin_tiny": _TimmSpec("swin_tiny_patch4_window7_224", {"dynamic_img_size": True}, "Swin-T"),
    "swin_base": _TimmSpec("swin_base_patch4_window12_384", {"dynamic_img_size": True}, "Swin-B"),
    "resnet18": _TimmSpec("resnet18", {}, "tests"),
    "resnet50": _TimmSpec("resnet50", {}, "tests"),
}


def list_backbones() -> list[str]:
    """The named backbones; any timm model also builds as ``"timm:<timm name>"``."""
    return ["small_cnn", *TIMM_BACKBONES]


def build_backbone_for(name: str, pretrained: bool, strides: Sequence[int | None], **kwargs
                       ) -> tuple[Backbone, list[int]]:
    """A backbone for a model that reads the maps at ``strides`` (None: the deepest), and the
    indices of those maps in its output.

    When the deepest map read is not the backbone's deepest, the backbone is built again to stop
    there, so that no parameter goes unused (DDP requires every parameter to get a gradient).
    ``out_indices`` given in ``kwargs`` is kept as it is.
    """
    backbone = build_backbone(name, pretrained, **kwargs)
    return _stopped(backbone, name, pretrained, [backbone.level(s) for s in strides], kwargs)


def build_backbone_last(name: str, pretrained: bool, last: int, picks: Sequence[int], **kwargs
                        ) -> tuple[Backbone, list[int]]:
    """As ``build_backbone_for``, for a model that reads ``picks`` (indices, negative from the
    end) among the backbone's last ``last`` maps."""
    backbone = build_backbone(name, pretrained, **kwargs)
    if len(backbone.strides) < last:
        raise ValueError(f"the model reads the last {last} maps; {name} has "
                         f"{len(backbone.strides)}")
    first = len(backbone.strides) - last
    wanted = [first + range(last)[i] for i in picks]
    return _stopped(backbone, name, pretrained, wanted, kwargs)


def _stopped(backbone: Backbone, name: str, pretrained: bool, wanted: list[int], kwargs: dict
             ) -> tuple[Backbone, list[int]]:
    """``backbone`` rebuilt to stop at the deepest ``wanted`` map unless it already does."""
    if max(wanted) == len(backbone.strides) - 1 or "out_indices" in kwargs:
        return backbone, wanted
    kept = sorted(set(wanted))
    backbone = build_backbone(name, pretrained, out_indices=kept, **kwargs)
    return backbone, [kept.index(i) for i in wanted]


def build_backbone(
    name: str, pretrained: bool = False, out_indices: Sequence[int] | None = None, **kwargs
) -> Backbone:
    """The backbone ``name`` (see ``list_backbones``); ``kwargs`` go to its constructor.

    ``out_indices`` picks levels (default: all). ``small_cnn`` takes ``widths``; timm
    backbones take timm's keyword arguments (``output_stride``, ``img_size``, ...).
    """
    if name == "small_cnn":
        if pretrained:
            raise ValueError("small_cnn is written in this course and has no pretrained "
                             "weights; pass pretrained=False")
        return SmallCNN(out_indices=out_indices, **kwargs)
    if name.startswith("timm:"):
        timm_name, defaults = name.removeprefix("timm:"), {}
    elif name in TIMM_BACKBONES:
        timm_name, defaults, _ = TIMM_BACKBONES[name]
    else:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}, "
                         "or 'timm:<any timm model name>'")
    kwargs = {**defaults, **kwargs}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    import timm  # here, not at the top: it takes seconds to import and small_cnn needs none of it

    try:
        body = timm.create_model(timm_name, pretrained=pretrained, features_only=True, **kwargs)
    except OSError as error:  # the Hub's download and cache errors are all OSErrors
        if not pretrained:
            raise
        raise RuntimeError(_missing_weights_message(name, timm_name, error)) from error
    return TimmBackbone(body)


def _missing_weights_message(name: str, timm_name: str, error: Exception) -> str:
    from huggingface_hub import constants
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(timm_name)
    repo = config.hf_hub_id if config is not None and config.hf_hub_id else f"timm/{timm_name}"
    return (
        f"the pretrained weights of backbone {name!r} (timm model {timm_name!r}, Hugging Face "
        f"Hub repo {repo!r}) could not be downloaded, and they are not in the local cache "
        f"{constants.HF_HUB_CACHE}. To get them: build this backbone once with pretrained=True "
        "on a machine with internet, so that they land in the Hugging Face cache "
        "(~/.cache/huggingface, or $HF_HOME); or run "
        f"`hf download {repo}` (`huggingface-cli download {repo}` with huggingface_hub < 1.0) "
        "on a machine with internet and copy its ~/.cache/huggingface/hub here. On an offline "
        "machine set HF_HUB_OFFLINE=1, so that this fails at once instead of retrying the "
        "network for about a minute"
        f"{' (it is set here: nothing was downloaded)' if constants.HF_HUB_OFFLINE else ''}. "
        "Or pass pretrained=False to start from random weights. "
        f"(cause: {type(error).__name__}: {error})"
    )
