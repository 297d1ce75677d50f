"""Backbones: one NCHW contract for small_cnn and every timm name; offline weights; coordinates."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from refseg_lib.nn.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TIMM_BACKBONES,
    build_backbone,
    list_backbones,
)
from refseg_lib.nn.coords import append_coordinates, spatial_coordinates


def test_small_cnn_levels_and_shapes():
    backbone = build_backbone("small_cnn")
    assert backbone.channels == [16, 32, 64, 96, 128]
    assert backbone.strides == [2, 4, 8, 16, 32]
    features = backbone(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(backbone.channels, backbone.strides, strict=True)
    ]


def test_small_cnn_widths_and_out_indices_stop_early():
    backbone = build_backbone("small_cnn", out_indices=(1, 2), widths=(8, 8, 12, 16, 16))
    assert backbone.channels == [8, 12]
    assert backbone.strides == [4, 8]
    assert len(backbone.stages) == 3  # nothing built past the deepest requested stage
    assert [tuple(f.shape) for f in backbone(torch.rand(1, 3, 32, 32))] == [
        (1, 8, 8, 8), (1, 12, 4, 4)]
    with pytest.raises(ValueError, match="out_indices"):
        build_backbone("small_cnn", out_indices=(5,))


def test_backbone_normalises_raw_images_itself():
    backbone = build_backbone("small_cnn").eval()
    images = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images)[-1],
                                   backbone.forward_features((images - mean) / std)[-1])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backbone(torch.rand(3, 32, 32))


def test_level_picks_the_deepest_map_at_a_stride():
    backbone = build_backbone("small_cnn")
    assert backbone.level(None) == 4
    assert backbone.level(8) == 2
    with pytest.raises(ValueError, match=r"strides: \[2, 4, 8, 16, 32\]"):
        backbone.level(64)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="small_cnn, dpn92, resnet101_deeplab"):
        build_backbone("vgg19_bn")
    assert list_backbones() == ["small_cnn", *TIMM_BACKBONES]


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="pretrained=False"):
        build_backbone("small_cnn", pretrained=True)


# (channels, strides) of every level: the contract models rely on.
EXPECTED_LEVELS = {
    "dpn92": ([64, 336, 704, 1552, 2688], [2, 4, 8, 16, 32]),  # DMN's skip widths
    "resnet101_deeplab": ([64, 256, 512, 1024, 2048], [2, 4, 8, 8, 8]),  # output stride 8
    "darknet53": ([32, 64, 128, 256, 512, 1024], [1, 2, 4, 8, 16, 32]),
    "vgg16": ([64, 128, 256, 512, 512, 512], [1, 2, 4, 8, 16, 32]),
    "swin_tiny": ([96, 192, 384, 768], [4, 8, 16, 32]),
    "swin_base": ([128, 256, 512, 1024], [4, 8, 16, 32]),
    "resnet18": ([64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    "resnet50": ([64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
}


@pytest.mark.parametrize("name", sorted(TIMM_BACKBONES))
def test_timm_backbone_returns_nchw_maps_as_declared(name):
    # Built once each, at 64 px: the smallest size every stride divides. For Swin, the stage
    # maps (16, 8, 4, 2) are not multiples of the window (7 or 12): timm pads them.
    backbone = build_backbone(name, pretrained=False).eval()
    assert (backbone.channels, backbone.strides) == EXPECTED_LEVELS[name]
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [
        (1, c, 64 // s, 64 // s)
        for c, s in zip(backbone.channels, backbone.strides, strict=True)
    ]
    expected_mean = backbone.body.pretrained_cfg["mean"]  # dpn92's differs from ImageNet's
    torch.testing.assert_close(backbone.mean.flatten(), torch.tensor(expected_mean))


def test_any_timm_model_builds_by_its_timm_name():
    backbone = build_backbone("timm:resnet18", out_indices=(2, 4))
    assert (backbone.channels, backbone.strides) == ([128, 512], [8, 32])


def test_pretrained_weights_offline_fail_fast_with_instructions(tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE when it is imported, so the check runs in a fresh
    # interpreter; an empty HF_HOME makes sure no cached copy is found.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = ("from refseg_lib.nn.backbones import build_backbone\n"
            "build_backbone('resnet18', pretrained=True)\n")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert elapsed < 15, f"took {elapsed:.1f} s to fail"
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("RuntimeError:"), result.stderr[-2000:]
    for words in ["'resnet18'", "timm/resnet18.", "could not be downloaded", "local cache",
                  "~/.cache/huggingface", "hf download timm/resnet18.", "HF_HUB_OFFLINE=1",
                  "pretrained=False"]:
        assert words in error, words


def test_spatial_coordinates_by_hand_on_a_2x4_map():
    coords = spatial_coordinates(2, 4)
    assert coords.shape == (8, 2, 4)
    assert coords.dtype == torch.float32
    xmin = [-1.0, -0.5, 0.0, 0.5]
    xmax = [-0.5, 0.0, 0.5, 1.0]
    xctr = [-0.75, -0.25, 0.25, 0.75]
    ymin, ymax, yctr = [-1.0, 0.0], [0.0, 1.0], [-0.5, 0.5]
    expected = torch.tensor([
        [xmin, xmin],
        [[ymin[0]] * 4, [ymin[1]] * 4],
        [xmax, xmax],
        [[ymax[0]] * 4, [ymax[1]] * 4],
        [xctr, xctr],
        [[yctr[0]] * 4, [yctr[1]] * 4],
        [[0.25] * 4] * 2,  # 1 / W
        [[0.5] * 4] * 2,  # 1 / H
    ])
    torch.testing.assert_close(coords, expected, rtol=0, atol=0)
    assert coords.min() >= -1 and coords.max() <= 1


def test_append_coordinates_follows_batch_device_and_dtype():
    features = torch.rand(3, 5, 2, 4, dtype=torch.float64)
    out = append_coordinates(features)
    assert out.shape == (3, 13, 2, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out[:, :5], features)
    torch.testing.assert_close(out[2, 5:], spatial_coordinates(2, 4, dtype=torch.float64))
