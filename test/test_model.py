"""SMCVAE model: shapes, merge exactness, gradients, variants, losses, persistence."""
import json

import pytest
import torch

from smcvae_ros.model import (SMCVAE, SMCVAEConfig, build_model, kl_loss, load_model, patch_to_pixel_mask,
                              patchify, pixel_to_patch_mask, save_model, smcvae_loss, unpatchify)

SMALL = dict(img_size=32, patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1,
             dec_heads=2, latent_dim=16)
PAPER_LIKE = dict(img_size=64, patch_size=8, enc_dim=192, enc_depth=4, enc_heads=4, dec_dim=192, dec_depth=4,
                  dec_heads=4, latent_dim=192, stem='linear')


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def batch(b=3, s=32, seed=0):
    """ref (B,3,S,S), damaged (B,4,S,S) with an off-grid failed-pixel channel, patch mask (B,N)."""
    g = torch.Generator().manual_seed(seed)
    ref, dmg = torch.rand(b, 3, s, s, generator=g), torch.rand(b, 4, s, s, generator=g)
    failed = torch.zeros(b, 1, s, s)
    failed[:, :, 3:14, 5:22] = 1          # a rectangle on no patch boundary
    failed[:, :, 20:21, 27:30] = 1
    dmg[:, 3:4] = failed
    return ref, dmg, pixel_to_patch_mask(failed, 8)


def test_patchify_roundtrip_and_masks():
    img = torch.rand(2, 3, 32, 48)
    x = patchify(img, 8)
    assert x.shape == (2, 24, 192)
    assert torch.equal(unpatchify(x, 8, 32, 48), img)
    pm = torch.zeros(2, 24, dtype=torch.bool)
    pm[0, 5] = True
    px = patch_to_pixel_mask(pm, 8, 32, 48)
    assert px.sum() == 64 and px[0, 0, 0:8, 40:48].all()
    assert torch.equal(pixel_to_patch_mask(px, 8), pm)


@pytest.mark.parametrize('variant', [{}, {'encoder': 'dual'}, {'latent': 'var'}, {'latent': 'none'},
                                     {'stem': 'linear', 'gate': False}, {'fill': 'none', 'align': 'none'}])
def test_shapes_and_healthy_pixels_bit_exact(variant):
    torch.manual_seed(0)
    model = build_model({**SMALL, **variant})
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)
    ref, dmg, mask = batch()
    out = model(ref, dmg, mask)
    assert out['pred'].shape == ref.shape    # (B,C,S,S): the prediction as an image
    assert out['restored'].shape == ref.shape
    healthy = (dmg[:, 3:4] == 0).expand_as(ref)
    assert torch.equal(out['restored'][healthy], dmg[:, :3][healthy])  # bit-exact, per pixel (off-grid)
    assert not torch.equal(out['restored'][~healthy], dmg[:, :3][~healthy])
    assert out['mean'].shape == (3, 16, 16)
    assert (out['scale'] is None) == (variant.get('latent') == 'none')
    if out['scale'] is not None:
        assert (out['scale'] > 0).all()


def test_fill_none_ignores_the_values_under_the_holes():
    torch.manual_seed(0)
    model = build_model({**SMALL, 'fill': 'none'}).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)
    ref, dmg, mask = batch()
    other = dmg.clone()
    px = (dmg[:, 3:4] > 0).expand(-1, 3, -1, -1)
    other[:, :3][px] = torch.rand(int(px.sum()))
    a, b = model(ref, dmg, mask)['restored'], model(ref, other, mask)['restored']
    assert torch.allclose(a, b, atol=1e-5)
    # with the Telea fill as input, the fill is a cue the model uses
    model = build_model(SMALL).eval()
    assert not torch.allclose(model(ref, dmg, mask)['restored'], model(ref, other, mask)['restored'])


def test_gradients_flow_to_both_frames_through_shared_encoder():
    torch.manual_seed(0)
    model = build_model(SMALL)
    ref, dmg, mask = batch()
    ref.requires_grad_(True)
    dmg.requires_grad_(True)
    loss, _ = smcvae_loss(model(ref, dmg, mask), torch.rand_like(ref), dmg, 0.01)
    loss.backward()
    assert ref.grad.abs().sum() > 0 and dmg.grad.abs().sum() > 0
    stem = model.encoder.stem.net[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    assert model.encoder_ref is None  # one encoder, shared by both frames


def test_siamese_vs_dual_parameter_count_paper_setting():
    siamese, dual = n_params(build_model(PAPER_LIKE)), n_params(build_model({**PAPER_LIKE, 'encoder': 'dual'}))
    assert 3.5e6 < siamese < 4.3e6  # the paper-style 3.75M-parameter ViT
    assert 1.38 < dual / siamese < 1.50  # paper: dual encoders cost +43% parameters


def test_kl_zero_at_prior_and_positive_elsewhere():
    m, s = torch.zeros(2, 5, 7), torch.ones(2, 5, 7)
    assert kl_loss(m, s).abs() < 1e-7
    assert kl_loss(m + 0.5, s) > 0 and kl_loss(m, s * 2) > 0
    assert kl_loss(m, None) == 0


def test_deterministic_and_sampling_modes():
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)
        model.to_scale.bias.fill_(2.0)
    ref, dmg, mask = batch()
    a, b = model(ref, dmg, mask)['restored'], model(ref, dmg, mask)['restored']
    assert torch.equal(a, b)
    restored, var = model.sample_stats(ref, dmg, mask, k=6)
    assert torch.allclose(restored, a, atol=1e-5)  # the Z = M pass rides along with the samples
    assert var.shape == (3, 1, 32, 32)
    failed = dmg[:, 3:4] > 0
    assert var[failed].mean() > 0 and var[~failed].abs().max() == 0


def test_untrained_model_starts_at_the_mean_of_the_cues():
    """Zero-initialised gate and residual heads: the prediction is the plain mean of the aligned
    reference and the fill (the `blend` baseline); with gate off it is the aligned reference."""
    ref, dmg, mask = batch()
    failed = (dmg[:, 3:4] > 0).expand_as(ref)
    out = build_model(SMALL).eval()(ref, dmg, mask)['restored']
    assert torch.allclose(out[failed], ((ref + dmg[:, :3]) / 2)[failed], atol=1e-5)
    out = build_model({**SMALL, 'gate': False}).eval()(ref, dmg, mask)['restored']
    assert torch.allclose(out[failed], ref[failed], atol=1e-5)


def test_save_load_roundtrip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    path = save_model(model, tmp_path / 'm.safetensors', {'note': 'x'})
    assert json.loads(path.with_suffix('.json').read_text())['model']['enc_dim'] == 32
    loaded = load_model(path)
    ref, dmg, mask = batch()
    assert torch.equal(model(ref, dmg, mask)['restored'], loaded(ref, dmg, mask)['restored'])


def test_config_validation():
    with pytest.raises(ValueError):
        SMCVAEConfig(encoder='triple')
    with pytest.raises(ValueError):
        SMCVAEConfig(img_size=30, patch_size=8)
    with pytest.raises(ValueError):
        SMCVAEConfig.from_dict({'nope': 1})
    with pytest.raises(ValueError):
        SMCVAEConfig(fill='navier')
    assert isinstance(SMCVAE(SMCVAEConfig(**SMALL)), SMCVAE)
