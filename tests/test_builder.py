import copy

import pytest
import torch
import torch.nn.functional as F

import moga_zoo
from moga_zoo import specs
from moga_zoo.blocks import SamePad
from moga_zoo.builder import SpecNet
from moga_zoo.specs import SpecError


@pytest.mark.parametrize("name", moga_zoo.list_models())
def test_forward_features_head_and_classes(name):
    m = moga_zoo.create_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape[-2:] == (7, 7) and f.shape[1] == m.feature_info[-1]["channels"]
        assert torch.allclose(m.forward_head(f), m(x), atol=1e-5)
        assert m.forward_head(f, pre_logits=True).shape == (2, m.num_features)
    assert m(x).shape == (2, 7) and m.num_classes == 7


def test_features_only_strides_and_channels():
    m = moga_zoo.create_model("moga_a", features_only=True).eval()
    assert [(f["stride"], f["channels"]) for f in m.feature_info] == [(4, 24), (8, 40), (16, 112), (32, 960)]
    outs = m(torch.randn(1, 3, 256, 256))
    assert [tuple(o.shape[1:]) for o in outs] == [(24, 64, 64), (40, 32, 32), (112, 16, 16), (960, 8, 8)]
    m2 = moga_zoo.create_model("efficientnet_lite0", features_only=True, out_indices=(2, 3))
    assert [(f["stride"], f["channels"]) for f in m2.feature_info] == [(8, 40), (16, 112)]
    assert len(m2.features) < len(SpecNet(specs.EFFICIENTNET_LITE0).features)  # truncated
    with pytest.raises(SpecError, match="out_indices \\[5\\] out of range"):
        moga_zoo.create_model("moga_a", features_only=True, out_indices=(1, 5))


def test_features_only_matches_full_model_maps():
    full = moga_zoo.create_model("moga_b").eval()
    back = moga_zoo.create_model("moga_b", features_only=True, out_indices=(4,)).eval()
    back.load_state_dict({k: v for k, v in full.state_dict().items() if k.startswith("features.")})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(back(x)[0], full.forward_features(x), atol=1e-5)


def test_reset_classifier_and_dropout():
    m = moga_zoo.create_model("moga_c", drop_rate=0.0)
    assert m.dropout.p == 0.0 and moga_zoo.create_model("moga_c").dropout.p == 0.2
    m.reset_classifier(5)
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 5) and m.spec.num_classes == 5
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1280)


def test_prebuilt_modules_are_used_as_given_and_checked():
    spec = specs.MOGA_C
    ref = SpecNet(spec)
    mods = list(ref.features) + list(ref.head_convs)
    net = SpecNet(spec, modules=mods)
    assert all(a is b for a, b in zip(list(net.features) + list(net.head_convs), mods))
    assert torch.equal(net.features[3].project.conv.weight, ref.features[3].project.conv.weight)
    with pytest.raises(SpecError, match="has 18 rows before its classifier, got 17"):
        SpecNet(spec, modules=mods[:-1])
    with pytest.raises(SpecError, match="features_only and drop_path_rate"):
        SpecNet(spec, modules=mods, drop_path_rate=0.1)


def test_input_size_must_be_multiple_of_32():
    with pytest.raises(SpecError, match="multiple of 32.*try 224"):
        moga_zoo.create_model("moga_a", input_size=225)
    assert moga_zoo.create_model("moga_a", input_size=192).input_size == 192


def test_folded_inference_equals_training_graph_and_tracks_weight_changes():
    m = moga_zoo.create_model("moga_a").eval()
    for mod in m.modules():  # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 224, 224)
    plain = m(x).detach()  # autograd on: conv -> BN
    with torch.no_grad():
        folded = m(x)  # folded path, fills the cache
    assert torch.allclose(plain, folded, atol=1e-4)
    other = copy.deepcopy(m.state_dict())
    for k, v in other.items():
        if k.endswith("running_var"):
            v.mul_(1.5)
    m.load_state_dict(other)  # in-place copies: the cache must notice
    with torch.inference_mode():
        after = m(x)
    assert not torch.allclose(after, folded, atol=1e-3)
    assert torch.allclose(after, m(x).detach(), atol=1e-4)


def test_hooks_see_every_conv_in_inference():
    m = moga_zoo.create_model("moga_c").eval()
    calls = []
    m.features[0].conv.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        m(torch.randn(1, 3, 224, 224))
    assert calls == [1]


@pytest.mark.parametrize("size", [224, 225, 7, 8])
@pytest.mark.parametrize("k", [3, 5])
def test_same_padding_is_tensorflow_same(size, k):
    x = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    out = SamePad(k, 2)(x)
    total = max((-(-size // 2) - 1) * 2 + k - size, 0)
    before = total // 2
    assert out.shape[-1] == size + total
    assert torch.equal(out[..., before:before + size, before:before + size], x)  # extra pixel after
    y = F.conv2d(out, torch.ones(1, 1, k, k), stride=2)
    assert y.shape[-1] == -(-size // 2)


def test_inference_ready_matches_eager():
    from moga_zoo.inference import inference_ready
    m = moga_zoo.create_model("moga_b").eval()
    fast = inference_ready(m)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(fast(x), m(x), atol=1e-4)
