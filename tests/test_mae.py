"""The ViT masked autoencoder: shapes, config checks, and state-dict / numeric parity with BiaPy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from biapy_peer import run_biapy
from napari_ssl.config import ConfigError
from napari_ssl.models.mae import build_mae, estimate_mae_memory, patchify, unpatchify
from napari_ssl.models.mae_config import check_mae_config, mae_build_kwargs
from napari_ssl.models.vit_blocks import sincos_pos_embed
from napari_ssl.pretext.masking import make_mask, masked_loss, token_grid
from tiny_vit import tiny_vit

TINY = tiny_vit()  # its decoder is the one BiaPy rebuilds from mae_build_kwargs
# BiaPy's build_model always builds a 512 / 8 / 16 decoder: our defaults
TINY_BIAPY_DECODER = tiny_vit(
    mae_dec_hidden_size=512, mae_dec_num_layers=8, mae_dec_num_heads=16, mae_dec_mlp_dims=2048
)


@pytest.mark.parametrize(
    ("ndim", "channels", "patch"), [(2, 1, (32, 32)), (2, 3, (32, 32)), (3, 2, (16, 16, 16))]
)
def test_shapes_and_patchify_roundtrip(ndim: int, channels: int, patch: tuple[int, ...]) -> None:
    model = build_mae(TINY, ndim, channels, patch)
    x = torch.randn(2, channels, *patch)
    tokens = model.patchify(x)
    n_tokens = (patch[0] // 8) ** ndim
    assert tokens.shape == (2, n_tokens, 8**ndim * channels)
    assert torch.equal(model.unpatchify(tokens, patch), x)
    mask = make_mask(2, token_grid(patch, 8), "random", 0.75, torch.Generator().manual_seed(0))
    pred = model(x, mask)
    assert pred.shape == tokens.shape
    assert model.unpatchify(pred, patch).shape == x.shape


def test_patchify_pixel_order_is_channel_last_inside_a_token() -> None:
    # 2 channels, 4x4 image, 2x2 tokens: token 0 holds pixels (0,0),(0,1),(1,0),(1,1), each (c0, c1)
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    tokens = patchify(x, 2)
    assert tokens[0, 0].tolist() == [0, 16, 1, 17, 4, 20, 5, 21]
    assert tokens[0, 1].tolist() == [2, 18, 3, 19, 6, 22, 7, 23]  # row-major token order
    assert torch.equal(unpatchify(tokens, (4, 4), 2), x)


def test_sincos_positions_are_fixed_distinct_and_not_trained() -> None:
    model = build_mae(TINY, 3, 1, (16, 16, 16))
    pos = model.pos_embed[0]
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    assert torch.equal(pos, sincos_pos_embed((2, 2, 2), 32)[0])
    assert torch.count_nonzero(pos[0]) == 0  # class token
    tokens = pos[1:]
    assert torch.cdist(tokens, tokens).add(torch.eye(8)).min() > 0.5  # every position distinct
    assert tokens.abs().max() <= 1.0


def test_presets_override_the_encoder_numbers() -> None:
    cfg = dataclasses.replace(TINY, vit_preset="tiny", vit_embed_dim=7, vit_num_heads=5)
    model = build_mae(cfg, 2, 1, (32, 32))
    assert model.cls_token.shape[-1] == 192 and len(model.blocks) == 12
    assert model.blocks[0].attn.num_heads == 3


@pytest.mark.parametrize(
    ("changes", "ndim", "patch", "expected"),
    [
        ({}, 2, (32, 48), ["data.patch_size", "square", "(32, 32)"]),
        ({}, 3, (16, 16, 32), ["cubic", "(16, 16, 16)"]),
        ({}, 2, (36, 36), ["model.vit_token_size", "[2, 3, 4, 6, 9, 12, 18]", "[32, 40]"]),
        ({"vit_token_size": 32}, 2, (32, 32), ["at least 2 tokens", "[64, 96]"]),
        (
            {"vit_embed_dim": 30, "vit_num_heads": 4},
            2,
            (32, 32),
            ["model.vit_embed_dim (30)", "model.vit_num_heads (4)", "[1, 2, 3, 5, 6"],
        ),
        (
            {"mae_dec_hidden_size": 100, "mae_dec_num_heads": 16},
            2,
            (32, 32),
            ["model.mae_dec_hidden_size (100)", "model.mae_dec_num_heads", "[96, 112]"],
        ),
        ({}, 3, (32, 32), ["2 axes", "data.ndim is 3", "(32, 32, 32)"]),
        ({"vit_preset": "huge"}, 2, (32, 32), ["model.vit_preset", "'base'"]),
    ],
)
def test_config_check_messages(
    changes: dict, ndim: int, patch: tuple[int, ...], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        check_mae_config(dataclasses.replace(TINY, **changes), ndim, patch)
    for text in expected:
        assert text in str(err.value)


def test_build_kwargs_are_biapys_names_and_plain_values() -> None:
    kwargs = mae_build_kwargs(TINY_BIAPY_DECODER, 3, 2, (16, 16, 16), mask_type="random")
    assert kwargs == {
        "img_size": 16,
        "patch_size": 8,
        "in_chans": 2,
        "ndim": 3,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "decoder_embed_dim": 512,
        "decoder_depth": 8,
        "decoder_num_heads": 16,
        "mlp_ratio": 4.0,
        "masking_type": "random",
        "mask_ratio": 0.5,
        "return_just_preds": False,
        "device": "cpu",
    }
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_memory_estimate_bounds_measured_training_memory() -> None:
    cfg, patch, batch = TINY, (32, 32), 4
    model = build_mae(cfg, 2, 1, patch)
    n_params = sum(p.numel() for p in model.parameters())
    estimate = estimate_mae_memory(cfg, 2, patch, batch, 1, 0.5)
    assert estimate > 16 * n_params  # at least weights + grads + Adam moments
    bigger = estimate_mae_memory(cfg, 2, (64, 64), batch * 2, 1, 0.5)
    assert bigger > estimate
    assert estimate_mae_memory(cfg, 2, patch, batch, 1, 0.5, bytes_per_el=2) < estimate
    # activations autograd saves in one real step stay below the estimate's activation share
    weights = {p.data_ptr() for p in model.parameters()}
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in weights:
            saved.append(t.numel() * t.element_size())
        return t

    mask = make_mask(batch, token_grid(patch, 8), "grid", 0.5, None)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = masked_loss(model, torch.randn(batch, 1, *patch), mask, False)
    loss.backward()
    assert 0 < sum(saved) < estimate / 1.25 - 16 * n_params


# ---------------------------------------------------------------- BiaPy 3.7.1 parity

_BIAPY_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np, torch
from biapy.config.config import Config
from biapy.models import build_model
from biapy.models.mae import MaskedAutoencoderViT

work = Path(sys.argv[1])
report = {}
for case in json.loads((work / "cases.json").read_text()):
    name = case["name"]
    cfg = Config(str(work / "job"), "job")._C.clone()
    cfg.PROBLEM.TYPE = "SELF_SUPERVISED"
    cfg.PROBLEM.NDIM = f"{case['ndim']}D"
    cfg.DATA.PATCH_SIZE = tuple(case["patch"]) + (case["channels"],)
    cfg.MODEL.ARCHITECTURE = "mae"
    for key, value in case["model"].items():
        setattr(cfg.MODEL, key, value)
    model = build_model(cfg, [case["channels"]], ["I"], ["linear"], torch.device("cpu"))[0].eval()
    # (a) our state dicts load strictly into BiaPy's models
    model.load_state_dict(torch.load(work / f"{name}_ours.pt"), strict=True)
    custom = MaskedAutoencoderViT(**case["custom_kwargs"])
    custom.load_state_dict(torch.load(work / f"{name}_ours_custom.pt"), strict=True)

    # (b) BiaPy's own weights (random frozen positions), perturbed so no bias / norm is trivial
    torch.manual_seed(3)
    model.initialize_weights()
    with torch.no_grad():
        for p in model.state_dict().values():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(model.state_dict(), work / f"{name}_biapy.pt")
    x = torch.from_numpy(np.load(work / f"{name}_x.npy"))
    mask = torch.from_numpy(np.load(work / f"{name}_mask.npy"))

    def fixed_masking(tokens, mask=mask):
        # BiaPy's random_masking with the noise forced by our mask: visible tokens first,
        # in a random order (its encoder sees them shuffled)
        n, length, dim = tokens.shape
        noise = torch.rand(n, length) + 2.0 * mask.float()
        ids_shuffle = torch.argsort(noise, dim=1)
        keep = ids_shuffle[:, : length - int(mask[0].sum())]
        kept = torch.gather(tokens, 1, keep.unsqueeze(-1).repeat(1, 1, dim))
        return kept, mask.float(), torch.argsort(ids_shuffle, dim=1)

    model.masking_func = fixed_masking
    with torch.no_grad():
        latent, used_mask, ids_restore = model.forward_encoder(x)
        pred = model.forward_decoder(latent, ids_restore)
        losses = []
        for norm_pix in (False, True):
            model.norm_pix_loss = norm_pix
            losses.append(float(model.forward_loss(x, pred, used_mask)))
    np.save(work / f"{name}_pred.npy", pred.numpy())
    report[name] = losses
print(json.dumps(report))
"""

_CASES = [
    {"name": "2d", "ndim": 2, "channels": 2, "patch": [32, 32]},
    {"name": "3d", "ndim": 3, "channels": 1, "patch": [16, 16, 16]},
]


@pytest.fixture(scope="module")
def biapy_exchange(biapy_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One BiaPy run: it loads our weights, and writes its own weights and predictions."""
    work = tmp_path_factory.mktemp("mae_biapy")
    gen = torch.Generator().manual_seed(0)
    cases = []
    for case in _CASES:
        patch, name = tuple(case["patch"]), case["name"]
        ours = build_mae(TINY_BIAPY_DECODER, case["ndim"], case["channels"], patch)
        custom = build_mae(TINY, case["ndim"], case["channels"], patch)
        torch.save(ours.state_dict(), work / f"{name}_ours.pt")
        torch.save(custom.state_dict(), work / f"{name}_ours_custom.pt")
        x = torch.randn(2, case["channels"], *patch, generator=gen)
        mask = make_mask(2, token_grid(patch, 8), "random", 0.6, gen)
        np.save(work / f"{name}_x.npy", x.numpy())
        np.save(work / f"{name}_mask.npy", mask.numpy())
        model = {"VIT_TOKEN_SIZE": 8, "VIT_EMBED_DIM": 32, "VIT_NUM_LAYERS": 2, "VIT_NUM_HEADS": 2}
        kwargs = mae_build_kwargs(TINY, case["ndim"], case["channels"], patch)
        cases.append({**case, "model": model, "custom_kwargs": kwargs})
    (work / "cases.json").write_text(json.dumps(cases))
    losses = json.loads(run_biapy(biapy_python, _BIAPY_SCRIPT, str(work)).strip().splitlines()[-1])
    return {"work": work, "losses": losses}


@pytest.mark.biapy
def test_our_state_dicts_load_strictly_into_biapy(biapy_exchange: dict) -> None:
    # BiaPy raised inside the script otherwise (load_state_dict(strict=True) for 2D and 3D,
    # BiaPy's build_model decoder and our custom 32/1/2 decoder rebuilt from mae_build_kwargs)
    assert set(biapy_exchange["losses"]) == {"2d", "3d"}


@pytest.mark.biapy
@pytest.mark.parametrize("case", _CASES, ids=lambda c: c["name"])
def test_biapy_weights_load_and_predict_the_same(biapy_exchange: dict, case: dict) -> None:
    work, name, patch = biapy_exchange["work"], case["name"], tuple(case["patch"])
    model = build_mae(TINY_BIAPY_DECODER, case["ndim"], case["channels"], patch).eval()
    model.load_state_dict(torch.load(work / f"{name}_biapy.pt"), strict=True)
    x = torch.from_numpy(np.load(work / f"{name}_x.npy"))
    mask = torch.from_numpy(np.load(work / f"{name}_mask.npy"))
    with torch.no_grad():
        pred = model(x, mask)
        losses = [float(masked_loss(model, x, mask, norm)) for norm in (False, True)]
    expected = torch.from_numpy(np.load(work / f"{name}_pred.npy"))
    torch.testing.assert_close(pred, expected, atol=2e-5, rtol=1e-4)
    assert losses == pytest.approx(biapy_exchange["losses"][name], rel=1e-5)
