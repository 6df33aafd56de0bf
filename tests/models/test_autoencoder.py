import pytest
import torch

from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder, reconstruction_loss

TINY = dict(n_mels=20, latent_channels=4, channels=[16, 24], blocks=1, groups=8)


def test_shapes_and_scale():
    torch.manual_seed(0)
    ae = MelAutoencoder(AutoencoderConfig(**TINY, latent_scale=2.0)).eval()
    mel = torch.rand(2, 20, 32) * 2 - 1
    z = ae.encode(mel)
    assert z.shape == (2, 4, 16) and ae.cfg.downsample == 2
    assert torch.allclose(z, ae.posterior(mel)[0] * 2.0)
    assert ae.decode(z).shape == mel.shape
    assert torch.allclose(ae.decode(z), ae.decoder(ae.posterior(mel)[0]), atol=1e-6)  # the scale cancels
    with pytest.raises(ValueError, match="divisible by 2"):
        ae.encode(torch.zeros(1, 20, 33))


def test_reconstruction_loss_sees_edges():
    mel = torch.zeros(1, 20, 16)
    mel[:, 5, :] = 1.0  # a harmonic line
    blurred = torch.nn.functional.avg_pool1d(mel.transpose(1, 2), 3, 1, 1).transpose(1, 2)
    parts = reconstruction_loss(blurred, mel)
    assert parts["df"] > 0 and parts["l1"] > 0 and parts["dt"] == 0
    assert all(v == 0 for v in reconstruction_loss(mel, mel).values())


def test_overfits_a_batch():
    """Training cuts the reconstruction error of a fixed batch severalfold: the decoder can draw sharp lines."""
    torch.manual_seed(0)
    ae = MelAutoencoder(AutoencoderConfig(**TINY))
    mel = -torch.ones(4, 20, 32)
    for i in range(4):
        mel[i, 3 + 3 * i, 4 * i:4 * i + 12] = 0.8  # notes: a line per clip, starting at different frames
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        rec, kl = ae(mel)
        loss = sum(reconstruction_loss(rec, mel).values()) + 1e-4 * kl
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first


def test_post_net_starts_as_the_identity_and_reads_across_bins():
    """A new post-net leaves a finished decoder's output unchanged until trained; once its last layer
    moves, a change in one mel bin reaches bins 15 apart (dilations 1, 2, 4, 8) but not 40 apart."""
    torch.manual_seed(0)
    plain = MelAutoencoder(AutoencoderConfig(**TINY)).eval()
    post = MelAutoencoder(AutoencoderConfig(**TINY, post_channels=4, post_dilations=[1, 2, 4, 8])).eval()
    missing, unexpected = post.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("post.") for k in missing)
    z = torch.randn(1, 4, 32)
    assert torch.equal(post.decode(z), plain.decode(z))
    assert post.last_layer() is post.post.out.weight and plain.last_layer() is plain.decoder[-1].weight

    net = MelAutoencoder(AutoencoderConfig(**{**TINY, "n_mels": 64}, post_channels=4)).post
    torch.nn.init.normal_(net.out.weight)
    mel = torch.zeros(1, 64, 16, requires_grad=True)
    net(mel)[0, 20, 8].backward()
    reach = mel.grad[0, :, 8].abs() > 0
    assert reach[20 - 15] and reach[20 + 15] and not reach[20 + 40]


def test_texture_noise_is_seeded_level_dependent_and_absent_until_calibrated():
    torch.manual_seed(0)
    assert "texture_std" not in MelAutoencoder(AutoencoderConfig(**TINY)).state_dict()  # older files still load
    ae = MelAutoencoder(AutoencoderConfig(**TINY, texture_edges=[0.0])).eval().requires_grad_(False)
    z = torch.randn(2, 4, 16)
    mean = ae.decode(z, texture=False)
    assert torch.equal(ae.decode(z), mean)  # zero std until calibrated
    ae.texture_std[:, 1] = 0.1  # only where the decoded value is above the edge
    a = ae.decode(z)
    assert torch.equal(a, ae.decode(z))  # a fixed seed by default: decode stays a function of z
    assert not torch.equal(a, ae.decode(z, torch.Generator().manual_seed(5)))
    d = a - mean
    assert torch.all(d[mean <= 0] == 0) and float(d[mean > 0].std()) == pytest.approx(0.1, rel=0.2)
    zz = z.clone().requires_grad_()
    ae.decode(zz).square().sum().backward()
    assert zz.grad.abs().sum() > 0


def test_texture_net_adds_seeded_high_passed_detail_and_keeps_the_gradient():
    """The texture network starts silent (zero last layer), then adds seeded noise-driven detail whose 5 x 5
    local mean is zero (it cannot move levels), reads the decoded level, and leaves decode's gradient as it was."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    ae = MelAutoencoder(AutoencoderConfig(**TINY, texture_channels=8)).eval().requires_grad_(False)
    z = torch.randn(2, 4, 16)
    mean = ae.decode(z, texture=False)
    assert torch.equal(ae.decode(z), mean)  # silent until trained
    torch.nn.init.normal_(ae.texture_net.out.weight, std=0.3)
    a = ae.decode(z)
    r = a - mean
    assert r.abs().mean() > 1e-3
    assert torch.equal(a, ae.decode(z)) and not torch.equal(a, ae.decode(z, torch.Generator().manual_seed(5)))
    local = F.avg_pool2d(r.unsqueeze(1), 5, 1, 2, count_include_pad=False)
    assert local.abs().mean() < 0.35 * r.abs().mean()
    # the residual depends on the decoded mel, not only on the noise
    g = torch.Generator().manual_seed(1)
    r2 = ae.add_texture(mean + 0.5, torch.Generator().manual_seed(1)) - (mean + 0.5)
    assert not torch.allclose(ae.add_texture(mean, g) - mean, r2)
    zz = z.clone().requires_grad_()
    ae.decode(zz).sum().backward()
    zz2 = z.clone().requires_grad_()
    ae.decode(zz2, texture=False).sum().backward()
    assert torch.allclose(zz.grad, zz2.grad)  # identity through the texture
