"""Masking pretext: masks, the masked-token loss, reconstructions and the GUI preview."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from napari_ssl.config import Config, ConfigError
from napari_ssl.data.images import Image
from napari_ssl.data.normalization import compute_stats
from napari_ssl.engine.tasks import StatsTable, make_task
from napari_ssl.inference.metrics import masked_mse
from napari_ssl.models.mae import build_mae, patchify
from napari_ssl.pretext.masking import (
    hidden_count,
    make_mask,
    mask_to_pixels,
    masked_loss,
    preview_masked,
    reconstruct,
    token_grid,
)
from tiny_vit import tiny_vit

TINY = tiny_vit()
CPU = torch.device("cpu")


def masked_token_mse(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> float:
    """:func:`masked_mse` with a token mask ``(B, L)``; ``pred``, ``x``: ``(B, C, *S)``."""
    hidden = mask_to_pixels(mask, tuple(x.shape[2:]))
    return masked_mse(pred.detach().numpy(), x.numpy(), hidden.numpy())


def _normalised(a: np.ndarray) -> torch.Tensor:
    a = a.astype(np.float32)
    return torch.from_numpy((a - a.mean()) / a.std())


@pytest.fixture
def sem_patch(sem_2d: np.ndarray) -> torch.Tensor:
    """A 32 x 32 crop of the real SEM image, zero mean / unit variance: (1, 1, 32, 32)."""
    return _normalised(sem_2d[300:332, 500:532])[None, None]


def test_token_grid() -> None:
    assert token_grid((64, 32), 16) == (4, 2)
    assert token_grid((32, 32, 32), 8) == (4, 4, 4)
    with pytest.raises(ConfigError, match=r"model\.vit_token_size"):
        token_grid((60, 64), 16)


@pytest.mark.parametrize("grid", [(6, 6), (4, 4, 4)])
def test_random_mask_count_freshness_and_determinism(grid: tuple[int, ...]) -> None:
    n = int(np.prod(grid))
    gen = torch.Generator().manual_seed(7)
    mask = make_mask(8, grid, "random", 0.75, gen)
    assert mask.dtype == torch.bool and mask.shape == (8, n)
    hidden = n - int(n * 0.25)  # BiaPy keeps int(L * (1 - ratio)) tokens
    assert mask.sum(1).tolist() == [hidden] * 8 == [hidden_count(grid, "random", 0.75)] * 8
    assert len({tuple(r.tolist()) for r in mask}) == 8  # each row its own subset
    assert not torch.equal(mask, make_mask(8, grid, "random", 0.75, gen))  # fresh each call
    again = make_mask(8, grid, "random", 0.75, torch.Generator().manual_seed(7))
    assert torch.equal(mask, again)


@pytest.mark.parametrize(("n", "ratio", "hidden"), [(16, 0.7, 12), (10, 0.45, 5), (256, 0.75, 192)])
def test_random_mask_hides_as_many_tokens_as_biapy(n: int, ratio: float, hidden: int) -> None:
    """BiaPy 3.7.1 keeps ``int(L * (1 - ratio))`` tokens (rounding would give 11 and 4 here)."""
    assert hidden_count((n,), "random", ratio) == hidden
    assert make_mask(2, (n,), "random", ratio).sum(1).tolist() == [hidden] * 2


@pytest.mark.parametrize("grid", [(4, 4), (4, 4, 4), (3, 5)])
def test_grid_mask_is_a_fixed_checkerboard(grid: tuple[int, ...]) -> None:
    mask = make_mask(3, grid, "grid", 0.9, None)
    n = int(np.prod(grid))
    assert mask.sum(1).tolist() == [(n + 1) // 2] * 3  # 50 % (the extra one when L is odd)
    assert hidden_count(grid, "grid", 0.9) == (n + 1) // 2
    assert torch.equal(mask, make_mask(3, grid, "grid", 0.1, torch.Generator().manual_seed(1)))
    cells = mask[0].reshape(grid)
    for axis in range(len(grid)):  # neighbours along every axis differ
        assert bool((cells.diff(dim=axis) != 0).all())
    assert bool(cells.flatten()[0])  # same phase as BiaPy's 2D grid: token (0, 0) hidden


@pytest.mark.parametrize("mask_type", ["random", "grid"])
def test_masks_are_made_on_the_device_asked_for(mask_type: str) -> None:
    meta = make_mask(3, (4, 4), mask_type, 0.5, None, "meta")  # no host tensor involved
    assert meta.device.type == "meta" and meta.shape == (3, 16) and meta.dtype == torch.bool
    gen = torch.Generator().manual_seed(0)
    assert make_mask(3, (4, 4), mask_type, 0.5, gen).device == gen.device  # the generator's


def test_mask_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"pretext\.mask_ratio"):
        make_mask(1, (4, 4), "random", 1.0, None)
    with pytest.raises(ConfigError, match=r"pretext\.mask_type"):
        make_mask(1, (4, 4), "blocks", 0.5, None)


class _Perturbed(torch.nn.Module):
    """Wraps a model and adds ``noise`` to the predictions of visible (or hidden) tokens."""

    def __init__(self, inner: torch.nn.Module, noise: float, where_hidden: bool) -> None:
        super().__init__()
        self.inner, self.noise, self.where_hidden = inner, noise, where_hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_hidden: int | None) -> torch.Tensor:
        pred = self.inner(x, mask, n_hidden)
        sel = mask if self.where_hidden else ~mask
        return pred + self.noise * sel.unsqueeze(-1) * torch.randn_like(pred)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_only_sees_hidden_tokens(sem_patch: torch.Tensor, norm_pix: bool) -> None:
    torch.manual_seed(0)
    model = build_mae(TINY, 2, 1, (32, 32)).eval()
    x = torch.cat([sem_patch, sem_patch.flip(-1)])
    mask = make_mask(2, (4, 4), "random", 0.5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = masked_loss(model, x, mask, norm_pix)
        visible_changed = masked_loss(_Perturbed(model, 100.0, False), x, mask, norm_pix)
        hidden_changed = masked_loss(_Perturbed(model, 1.0, True), x, mask, norm_pix)
        # the value itself: mean over hidden tokens of the per-token pixel MSE
        target = model.patchify(x)
        if norm_pix:
            target = (target - target.mean(-1, keepdim=True)) / (
                target.var(-1, keepdim=True) + 1e-6
            ).sqrt()
        expected = (model(x, mask) - target).pow(2).mean(-1)[mask].mean()
    assert float(visible_changed) == pytest.approx(float(loss), rel=1e-6)
    assert float(hidden_changed) > float(loss) + 0.5
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_tiny_mae_learns_a_real_image_patch(sem_patch: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_mae(TINY, 2, 1, (32, 32))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    mask = make_mask(1, (4, 4), "grid", 0.5, None)
    losses = []
    for _ in range(30):
        loss = masked_loss(model, sem_patch, mask, False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.4 * losses[0]
    out = reconstruct(model.eval(), sem_patch, mask)
    # better than filling hidden tokens with the mean (0): that MSE is the hidden pixels' power
    baseline = masked_token_mse(torch.zeros_like(sem_patch), sem_patch, mask)
    assert masked_token_mse(out["reconstruction"], sem_patch, mask) < 0.5 * baseline


@pytest.mark.parametrize(("ndim", "channels", "patch"), [(2, 2, (32, 32)), (3, 1, (16, 16, 16))])
def test_reconstruct_outputs(ndim: int, channels: int, patch: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_mae(TINY, ndim, channels, patch).eval()
    x = torch.randn(2, channels, *patch) * 3 + 5
    mask = make_mask(2, token_grid(patch, 8), "random", 0.5, torch.Generator().manual_seed(2))
    out = reconstruct(model, x, mask)
    assert set(out) == {"masked", "reconstruction", "reconstruction_and_visible"}
    hidden = mask_to_pixels(mask, patch).expand_as(x)
    assert hidden.float().mean() == pytest.approx(0.5)
    lows = x.flatten(2).amin(2)
    for b in range(2):
        for c in range(channels):
            assert bool((out["masked"][b, c][hidden[b, c]] == lows[b, c]).all())
    assert torch.equal(out["masked"][~hidden], x[~hidden])
    with torch.no_grad():
        recon = model.unpatchify(model(x, mask), patch)
    torch.testing.assert_close(out["reconstruction"], recon)
    both = out["reconstruction_and_visible"]
    assert torch.equal(both[~hidden], x[~hidden]) and torch.equal(both[hidden], recon[hidden])


def test_norm_pix_reconstruction_is_denormalised() -> None:
    """An oracle predicting exactly the normalised targets: visible tokens come back exactly,
    hidden ones through their visible neighbours' mean / variance (exact for a linear ramp on
    interior tokens of a checkerboard, whose 4 visible neighbours are symmetric)."""
    model = build_mae(TINY, 2, 1, (48, 48)).eval()
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    x = (3.0 * yy + 0.5 * xx + 10.0)[None, None]

    def oracle(inp: torch.Tensor, mask: torch.Tensor, n_hidden: int | None) -> torch.Tensor:
        t = model.patchify(inp)
        return (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()

    model.forward = oracle
    mask = make_mask(1, (6, 6), "grid", 0.5, None)
    recon = reconstruct(model, x, mask, norm_pix_loss=True)["reconstruction"]
    hidden = mask_to_pixels(mask, (48, 48)).expand_as(x)
    torch.testing.assert_close(recon[~hidden], x[~hidden], atol=1e-3, rtol=1e-5)
    inner = (slice(None), slice(None), slice(8, 40), slice(8, 40))
    torch.testing.assert_close(recon[inner], x[inner], atol=1e-3, rtol=1e-5)


def test_forward_with_the_hidden_count_given_skips_the_count_only() -> None:
    torch.manual_seed(0)
    model = build_mae(TINY, 2, 1, (32, 32)).eval()
    x = torch.randn(2, 1, 32, 32)
    mask = make_mask(2, (4, 4), "random", 0.75, torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask, 12), model(x, mask), rtol=0, atol=0)
    with pytest.raises(ValueError, match="n_hidden 17"):
        model(x, mask, 17)


class _Spy(torch.nn.Module):
    """Records the mask and hidden count each call passes on to ``inner``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_hidden: int | None) -> torch.Tensor:
        self.calls.append((mask, n_hidden))
        return self.inner(x, mask, n_hidden)


def _random_masking_task(sem_2d: np.ndarray) -> tuple[Any, StatsTable, torch.Tensor, torch.Tensor]:
    """A random-mask MaskingTask on two 32² SEM patches (4 x 4 tokens of 8): task, table, raw,
    image indices; the torch seed is set for the model built next."""
    cfg = Config(model=TINY)
    cfg.pretext.task, cfg.pretext.mask_type, cfg.data.patch_size = "masking", "random", (32, 32)
    crop = sem_2d[:64, :64][None]
    table = StatsTable([compute_stats(Image(crop, "sem"), cfg.data.normalization)], CPU)
    torch.manual_seed(0)
    raw = torch.from_numpy(np.stack([crop[:, :32, :32], crop[:, 32:, 32:]]).astype(np.float32))
    return make_task(cfg, table, integer=True), table, raw, torch.zeros(2, dtype=torch.long)


def test_masking_task_draws_seeded_masks_where_the_batch_is(sem_2d: np.ndarray) -> None:
    task, _, raw, idx = _random_masking_task(sem_2d)
    spy = _Spy(build_mae(TINY, 2, 1, (32, 32)))
    with torch.no_grad():
        first, again = (
            task.loss(spy, raw, idx, torch.Generator(CPU).manual_seed(5)) for _ in range(2)
        )
    assert float(first) == float(again)  # a seed gives the same masks
    (mask, n_hidden), (mask_again, _) = spy.calls
    assert torch.equal(mask, mask_again) and mask.device == raw.device
    assert n_hidden == hidden_count((4, 4), "random", 0.5) == 8  # from the config: no count


def test_validation_runs_the_model_once_per_batch(sem_2d: np.ndarray) -> None:
    task, table, raw, idx = _random_masking_task(sem_2d)
    model = build_mae(TINY, 2, 1, (32, 32)).eval()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        loss, image = task.evaluate(model, raw, idx, torch.Generator(CPU).manual_seed(5))
        assert len(calls) == 1 and image.shape == raw.shape  # one pass: loss and image
        mask = make_mask(2, (4, 4), "random", 0.5, torch.Generator(CPU).manual_seed(5))
        expected = masked_loss(model, table.normalize(raw, idx), mask, False, 8)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_the_masked_loss_and_the_test_metric_are_the_same_quantity() -> None:
    x, pred = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    mask = make_mask(2, (2, 2), "random", 0.5, torch.Generator().manual_seed(0))

    def predicts(inp: torch.Tensor, m: torch.Tensor, n_hidden: int | None) -> torch.Tensor:
        return patchify(pred, 8)

    loss = masked_loss(predicts, x, mask, norm_pix_loss=False)
    assert masked_token_mse(pred, x, mask) == pytest.approx(float(loss), rel=1e-6)


def test_masked_token_mse_counts_hidden_pixels_only() -> None:
    x = torch.randn(2, 3, 16, 16)
    mask = make_mask(2, (2, 2), "random", 0.5, torch.Generator().manual_seed(0))
    hidden = mask_to_pixels(mask, (16, 16)).expand_as(x)
    pred = x + 2.0 * hidden - 50.0 * ~hidden
    assert masked_token_mse(pred, x, mask) == pytest.approx(4.0)


def _preview_hidden(shape: tuple[int, ...], token: int, mask_type: str, seed: int) -> np.ndarray:
    grid = tuple(-(-n // token) for n in shape)
    mask = make_mask(1, grid, mask_type, 0.75, torch.Generator().manual_seed(seed))
    pixels = mask_to_pixels(mask, tuple(g * token for g in grid))[0, 0].numpy()
    return pixels[tuple(slice(0, n) for n in shape)]


def test_preview_masks_real_2d_image_with_ragged_borders(sem_2d: np.ndarray) -> None:
    image = sem_2d[None, :100, :150]  # (1, 100, 150): neither axis a multiple of 16
    view = preview_masked(image, 16, "random", 0.75, seed=3)
    assert view.shape == image.shape and view.dtype == image.dtype
    hidden = _preview_hidden((100, 150), 16, "random", 3)
    assert 0.6 < hidden.mean() < 0.9  # ~75 % of the pixels, partial border tokens included
    assert (view[:, hidden] == image.min()).all()
    assert np.array_equal(view[:, ~hidden], image[:, ~hidden])
    assert np.array_equal(view, preview_masked(image, 16, "random", 0.75, seed=3))
    assert not np.array_equal(view, preview_masked(image, 16, "random", 0.75, seed=4))


def test_preview_grid_on_real_3d_stack_per_channel_minimum(nuclei_3d: np.ndarray) -> None:
    stack = nuclei_3d[:16, :32, :32]
    image = np.stack([stack, stack // 2 + 1000]).astype(np.uint16)  # (2, 16, 32, 32)
    view = preview_masked(image, 8, "grid", 0.5, seed=0)
    assert view.shape == image.shape and view.dtype == np.uint16
    hidden = _preview_hidden((16, 32, 32), 8, "grid", 0)
    assert hidden.mean() == 0.5
    assert (view[0][hidden] == image[0].min()).all()
    assert (view[1][hidden] == image[1].min()).all() and image[1].min() >= 1000
    assert np.array_equal(view[:, ~hidden], image[:, ~hidden])


def test_forward_rejects_wrong_inputs_and_uneven_masks() -> None:
    model = build_mae(TINY, 2, 1, (32, 32))
    with pytest.raises(ValueError, match="does not match"):
        model(torch.zeros(1, 1, 48, 48), torch.zeros(1, 36, dtype=torch.bool))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :3] = True
    with pytest.raises(ValueError, match="as many tokens"):
        model(torch.zeros(2, 1, 32, 32), mask)
