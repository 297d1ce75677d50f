"""Recurrent instance segmentation (Romera-Paredes & Torr, ECCV 2016): a ConvLSTM over FCN
features emits one instance per step, with a confidence that says when to stop.

The model (sec. 3, Fig. 1-3; the official Torch7 code, bernard24/RIS, for the constants):

- FCN features x (B, C, h, w): our backbone's maps at ``feature_strides`` brought to the finest
  of them and concatenated (FCN-8s fuses strides 8, 16 and 32 this way), a 1x1 convolution to
  ``feature_dim`` channels, and the 8 coordinate channels (``nn.coords``; our addition: they let
  a convolutional state tell two identical shapes apart). The same x enters every step.
- A 2-layer ``nn.convlstm.ConvLSTM`` (sec. 3.1), gate biases of i, f, o at 1.0 and weights
  U(-0.08, 0.08) as in the official code; its state is the memory of what was emitted.
- Fig. 3's post-processing of the last layer's h_t (sec. 3.2):
  mask Y_t = sigmoid(log-softmax_pixels(Conv1x1(h_t)) + b), b initialised to 1.0 (the
  "spatial inhibition": a softmax over all pixels makes the instances of one step compete, so
  a step picks one object); confidence s_t = sigmoid(Linear(flatten h_t)), bias initialised to
  10 (every step starts confident; training teaches it to stop).
- Inference (sec. 4): unroll up to ``max_steps`` and stop at the first step with s_t < 0.5.

``ModelOutput.instances`` (B, K, h, w) holds the logits log-softmax + b of the K unrolled steps
(sigmoid gives Y_t), ``confidence`` (B, K) the s_t (their logits in ``aux``, for the loss),
and ``mask_logits`` (B, h, w) the union of the emitted instances (the max of their logits; -20
where none is emitted), which the harness's mask metrics score against the union of the
targets.

Training (``training_loss``): ``losses.ris_loss`` per image, on the masks resized to the image.
The number of steps unrolled follows the curriculum of sec. 4: ``train_steps=2`` unrolls two
steps for every image (the first stage), ``train_steps=None`` unrolls max n + ``extra_steps``
over the batch and scores min(n + ``extra_steps``, K) steps of each image (the paper's n + 2).

``conditioned=True`` (our extension, for ``data.instances.InstanceTask(query="plural")``): an
LSTM reads the sentence ("all the red shapes"); its last state, projected and tiled, joins the
features, so that the same recurrence emits only the instances the sentence selects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.losses import RIS_FORMS, resize_instances, ris_loss
from refseg_lib.models.common import build_config, check_inputs, encode_words
from refseg_lib.models.registry import register_model
from refseg_lib.nn.backbones import build_backbone_for
from refseg_lib.nn.convlstm import ConvLSTM
from refseg_lib.nn.coords import append_coordinates

NOTHING = -20.0  # mask logit where no instance is emitted


@dataclass
class RISConfig:
    """Defaults: the paper's people setting (FCN-8s on VGG-16, ConvLSTM 2 x 100 channels 3x3,
    lambda 1, the printed loss); ``quick()``: CPU-sized, on ShapeRef's 3-6 objects."""

    vocab_size: int | None = None  # read only when conditioned
    backbone: str = "vgg16"
    pretrained: bool = True
    feature_strides: tuple[int, ...] = (8, 16, 32)  # FCN-8s
    feature_dim: int = 256
    hidden_dim: int = 100  # ConvLSTM channels (plants: 30, people: 100)
    num_layers: int = 2
    kernel_size: int = 3
    gate_bias: float = 1.0  # official code: biases of i, f, o
    init_range: float = 0.08  # official code: U(-0.08, 0.08)
    mask_bias: float = 1.0  # b of the spatial inhibition, initial value
    confidence_bias: float = 10.0  # official code
    # h_t is average-pooled to g x g before the Linear: at 80 px and stride 8 (quick, g = 10)
    # this is the paper's flatten exactly; larger inputs (the paper profile's 320 px, 40 x 40 at
    # stride 8) are pooled, our choice so that one Linear serves every image size
    confidence_grid: int = 16
    max_steps: int = 10  # unrolled at inference
    stop_threshold: float = 0.5  # sec. 4: stop when s_t < 0.5
    train_steps: int | None = None  # curriculum stage 1: 2; None: n + extra_steps per image
    extra_steps: int = 2  # sec. 4: n + 2 steps
    loss_form: str = "paper"  # losses.RIS_FORMS
    confidence_weight: float = 1.0  # lambda
    conditioned: bool = False
    embed_dim: int = 64
    text_dim: int = 128
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> RISConfig:
        # small_cnn at 80 px: strides 8, 16, 32 give 10x10, 5x5, 3x3 maps (ShapeRef's objects
        # span 3-7 cells at stride 8; stride 4 costs 2.7x the time per step); flatten of the
        # 10x10 state as in the paper; ShapeRef has 3-6 objects, so 8 steps cover n + 2. The
        # mask bias starts at 3 (our choice): with the official 1.0 a 100-cell map starts at
        # Y ~ sigmoid(1 - log 100) = 0.03 everywhere, where the sigmoid's gradient vanishes
        # (with 1.0 on a 256-cell map, 300-step trials learned no mask: val foreground IoU
        # 0.00; 3.0 and 5.5: 0.44)
        defaults = dict(backbone="small_cnn", pretrained=False, feature_strides=(8, 16, 32),
                        feature_dim=48, hidden_dim=32, max_steps=8, mask_bias=3.0,
                        confidence_grid=10)
        return cls(**{**defaults, **overrides})


class RecurrentInstanceSegmentation(nn.Module):
    """FCN features -> ConvLSTM -> per step (mask, confidence) (module doc)."""

    def __init__(self, config: RISConfig):
        super().__init__()
        if config.loss_form not in RIS_FORMS:
            raise ValueError(f"loss_form must be one of {RIS_FORMS}, got {config.loss_form!r}")
        if config.train_steps is not None and config.train_steps < 1:
            raise ValueError(f"train_steps must be >= 1 or None, got {config.train_steps}")
        self.config = config
        self.backbone, self.levels = build_backbone_for(
            config.backbone, config.pretrained, list(config.feature_strides),
            **config.backbone_kwargs)
        channels = sum(self.backbone.channels[level] for level in self.levels)
        self.fuse = nn.Sequential(nn.Conv2d(channels, config.feature_dim, 1), nn.ReLU())
        text = 0
        if config.conditioned:
            if config.vocab_size is None:
                raise TypeError("a conditioned RIS model needs vocab_size=len(vocabulary)")
            self.embedding = nn.Embedding(config.vocab_size, config.embed_dim,
                                          padding_idx=PAD_INDEX)
            self.rnn = nn.LSTM(config.embed_dim, config.text_dim)
            text = config.text_dim
        self.lstm = ConvLSTM(config.feature_dim + 8 + text, config.hidden_dim, config.num_layers,
                             config.kernel_size, gate_bias=config.gate_bias,
                             init_range=config.init_range)
        self.mask_head = nn.Conv2d(config.hidden_dim, 1, 1)
        self.mask_bias = nn.Parameter(torch.tensor(config.mask_bias))
        self.confidence_head = nn.Linear(config.hidden_dim * config.confidence_grid ** 2, 1)
        with torch.no_grad():
            self.confidence_head.bias.fill_(config.confidence_bias)

    def features(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
                 ) -> torch.Tensor:
        """x (B, feature_dim + 8 [+ text_dim], h, w): the input of every step."""
        maps = self.backbone(images)
        size = maps[self.levels[0]].shape[-2:]
        x = torch.cat([F.interpolate(maps[level], size=size, mode="bilinear",
                                     align_corners=False) if maps[level].shape[-2:] != size
                       else maps[level] for level in self.levels], dim=1)
        x = append_coordinates(self.fuse(x))  # (B, feature_dim + 8, h, w)
        if self.config.conditioned:
            sentence = encode_words(self.rnn, self.embedding(tokens), lengths)  # (B, text_dim)
            x = torch.cat([x, sentence[:, :, None, None].expand(-1, -1, *size)], dim=1)
        return x

    def emit(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fig. 3 on the last layer's h_t (B, C, h, w): the mask's logits (B, h, w), Y_t their
        sigmoid, and the confidence's logit z_t (B,), s_t = sigmoid(z_t)."""
        score = self.mask_head(h).flatten(1)  # (B, h*w)
        logits = F.log_softmax(score, dim=1) + self.mask_bias  # spatial inhibition
        pooled = F.adaptive_avg_pool2d(h, self.config.confidence_grid)  # (B, C, g, g)
        return logits.view_as(h[:, 0]), self.confidence_head(pooled.flatten(1))[:, 0]

    def steps(self) -> int:
        """Steps unrolled by the next forward: the curriculum's in training, else max_steps."""
        if self.training and self.config.train_steps is not None:
            return self.config.train_steps
        return self.config.max_steps

    def forward(self, images, tokens, lengths, steps: int | None = None) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        x = self.features(images, tokens, lengths)
        state, masks, scores = None, [], []
        for _ in range(steps or self.steps()):
            h, state = self.lstm.step(x, state)
            mask, score = self.emit(h)
            masks.append(mask)
            scores.append(score)
        instances, z = torch.stack(masks, 1), torch.stack(scores, 1)  # (B, K, h, w), (B, K)
        confidence = torch.sigmoid(z)
        count = emitted_count(confidence, self.config.stop_threshold)  # (B,)
        emitted = torch.arange(instances.shape[1], device=count.device) < count[:, None]
        union = torch.where(emitted[:, :, None, None], instances, NOTHING).amax(1)
        return ModelOutput(mask_logits=union, confidence=confidence, instances=instances,
                           aux={"emitted": count, "confidence_logits": z})

    def training_loss(self, output: ModelOutput, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Mean over the batch of ``losses.ris_loss`` (sec. 3.3) on each image's instances."""
        probabilities = torch.sigmoid(resize_instances(output.instances.float(),
                                                       batch.images.shape[-2:]))  # (B,K,H,W)
        total, matched, unrolled = 0.0, 0, output.instances.shape[1]
        for b, targets in enumerate(batch.instance_masks):
            steps = unrolled
            if self.config.train_steps is None:
                steps = min(unrolled, targets.shape[0] + self.config.extra_steps)
            loss, pairs = ris_loss(probabilities[b, :steps],
                                   output.aux["confidence_logits"][b, :steps],
                                   targets, weight=self.config.confidence_weight,
                                   form=self.config.loss_form)
            total = total + loss
            matched += len(pairs)
        loss = total / len(batch.instance_masks)
        return loss, {"matched_per_image": matched / len(batch.instance_masks)}


def emitted_count(confidence: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Sec. 4's stopping rule: the number of steps before the first s_t < ``threshold``
    (B, K) -> (B,) long."""
    below = confidence < threshold  # (B, K)
    first = torch.where(below.any(1), below.float().argmax(1), below.shape[1])
    return first.long()


@register_model("ris", RISConfig)
def ris(profile: str = "quick", **cfg) -> RecurrentInstanceSegmentation:
    """Romera-Paredes & Torr 2016; ``cfg``: ``RISConfig`` fields, backbone kwargs."""
    return RecurrentInstanceSegmentation(build_config(RISConfig, profile, cfg))
