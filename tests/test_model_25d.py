"""The 2.5-D model: a 2-D U-Net on stacks of neighbouring slices, cut along the three axes and fused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mslesion.model import load_model_segmenter
from mslesion.model.store import package_run
from mslesion.model.training import TrainConfig, _centre_slices, draw_batch, load_cases, train
from mslesion.model.unet import SliceStackNet, build_unet, slice_stack
from tests.test_model import phantom_pre, write_npz_cases

ARCH_25D = {"name": "UNet2.5D", "in_channels": 2, "base": 4, "levels": 3, "slices": 5, "axes": [0, 1, 2]}


def test_slice_stack_net_predicts_each_voxel_from_its_own_slice_stack():
    """Each axis' logit at a voxel is the 2-D net's output on the 5 slices around it (zeros past the edge),
    in the channel layout training uses; the fused output is the mean probability of the axes."""
    torch.manual_seed(0)
    net = build_unet(ARCH_25D).eval()
    assert isinstance(net, SliceStackNet)
    x = torch.randn(1, 2, 12, 16, 8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2, 2, 2))
    with torch.no_grad():
        per_axis = []
        for axis in range(3):
            full = net.forward_axis(x, axis)
            assert full.shape == (1, 1, 12, 16, 8)
            for voxel in [(5, 6, 3), (0, 15, 7), (11, 0, 0)]:
                cut = [slice(None)] * 3
                cut[axis] = slice(voxel[axis], voxel[axis] + 5)  # padded: offsets -2..2 around the voxel
                keep = [slice(2, -2)] * 3
                keep[axis] = cut[axis]
                patch = padded[0][(slice(None),) + tuple(keep)]
                plane = net.net(slice_stack(patch, axis, 5)[None])[0, 0]
                at = [v for a, v in enumerate(voxel) if a != axis]
                assert float(full[0, 0][voxel]) == pytest.approx(float(plane[at[0], at[1]]), abs=1e-5)
            per_axis.append(torch.sigmoid(full))
        fused = torch.sigmoid(net(x))
    assert torch.allclose(fused, torch.stack(per_axis).mean(0), atol=1e-5)


def test_slice_stack_net_output_does_not_depend_on_its_chunk_size():
    """How many slice stacks go through the 2-D net at once is a speed setting only (instance norm is per
    stack): every chunk size gives the same logits, whether or not it divides the number of stacks."""
    torch.manual_seed(1)
    net = build_unet(ARCH_25D).eval()
    x = torch.randn(2, 2, 12, 16, 8)
    outs = []
    with torch.no_grad():
        for chunk in (1, 5, 8, 64):
            net.chunk = chunk
            outs.append(net(x))
    for out in outs[1:]:
        assert torch.allclose(out, outs[0], atol=1e-5)


def test_slice_stack_layout_is_contrast_major():
    patch = torch.arange(2 * 5 * 3 * 4, dtype=torch.float32).reshape(2, 5, 3, 4)  # (C, k, A, B), axis 0 thin
    stack = slice_stack(patch, 0, 5)
    assert stack.shape == (10, 3, 4)
    assert torch.equal(stack[1 * 5 + 3], patch[1, 3])
    with pytest.raises(ValueError, match="slices"):
        slice_stack(patch, 1, 5)


def test_centre_slices_moves_the_thin_axis_first():
    vol = torch.arange(9, dtype=torch.float32).view(1, 1, 9, 1).expand(1, 4, 9, 6)  # value = index along axis 1
    cut = _centre_slices(vol, 1, 5)
    assert cut.shape == (1, 5, 4, 6)
    assert [float(cut[0, s, 0, 0]) for s in range(5)] == [2, 3, 4, 5, 6]


def test_2p5d_batch_labels_the_centre_slice_of_each_stack(tmp_path):
    """With the FLAIR channel equal to the label (same smooth volume), the stack's middle slice is an affine
    copy (the per-channel contrast change) of the label slice: the label is the centre slice."""
    from mslesion.model.augment import AugmentConfig

    write_npz_cases(tmp_path / "data")
    cases = load_cases(tmp_path / "data", ("flair",), (), torch.device("cpu"), np.random.default_rng(0))
    for case in cases:
        smooth = torch.nn.functional.avg_pool3d(torch.rand(1, 1, *case.volume.shape[1:]), 5, 1, 2)[0, 0]
        case.volume[0] = smooth
        case.volume[1] = smooth
    off = AugmentConfig(p_elastic=0, p_gamma=0, p_bias=0, p_noise=0, p_blur=0, p_lowres=0, p_drop_channel=0)
    cfg = TrainConfig(data_dir="", out_dir="", arch="2.5d", patch=(5, 16, 16), batch=6, augment=off)
    img, lab, weight = draw_batch(cases, cfg, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    assert img.shape == (6, 5, 16, 16) and lab.shape == (6, 1, 16, 16) and weight is None
    for b in range(6):
        inside = lab[b, 0] > 0  # inside the volume (zero padding outside)
        centre = np.corrcoef(img[b, 2][inside].numpy(), lab[b, 0][inside].numpy())[0, 1]
        edge = np.corrcoef(img[b, 0][inside].numpy(), lab[b, 0][inside].numpy())[0, 1]
        assert centre > 0.999 and edge < centre


def test_lesion_wise_losses_need_3d_patches():
    with pytest.raises(ValueError, match="3-D"):
        TrainConfig(data_dir="", out_dir="", arch="2.5d", blob_weight=1.0)
    with pytest.raises(ValueError, match="arch"):
        TrainConfig(data_dir="", out_dir="", arch="2d")


def test_2p5d_training_packages_a_model_that_predicts_on_the_working_grid(tmp_path):
    write_npz_cases(tmp_path / "data")
    cfg = TrainConfig(data_dir=str(tmp_path / "data"), out_dir=str(tmp_path / "run"), arch="2.5d",
                      patch=(5, 16, 16), batch=4, iterations=2, base=4, levels=3, device="cpu", log_every=1,
                      infer_window=(48, 48, 48), holdout=("s1",), holdout_tta=False)
    summary = train(cfg)
    assert summary["architecture"]["name"] == "UNet2.5D" and summary["architecture"]["slices"] == 5
    with np.load(tmp_path / "run" / "pred_s1.npz") as z:
        assert z["fast_u8"].shape == (40, 40, 32)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
    folder = package_run(tmp_path / "run", tmp_path / "models" / "s25", "s25")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["inference"]["window_cpu"] == [48, 48, 48]
    seg = load_model_segmenter(str(folder), {"flair"}, "cpu")
    _, pre = phantom_pre(t1=False)
    prob = seg.predict(pre)
    assert prob.shape == pre.flair.shape and 0.0 <= float(prob.data.min()) <= float(prob.data.max()) <= 1.0
