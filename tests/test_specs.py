import json

import pytest
import torch

from moga_zoo import specs
from moga_zoo.builder import SpecNet
from moga_zoo.sizes import count
from moga_zoo.specs import Row, Spec, SpecError

EXACT = {  # MOGA_FACTS.md section 3
    "moga_a": (5_159_802, 304_042_176),
    "moga_b": (5_506_236, 248_634_720),
    "moga_c": (5_488_200, 221_089_920),
    "efficientnet_lite0": (4_652_008, 385_187_552),
    "mobilenetv3_large": (5_483_032, 216_589_760),  # torchvision's mobilenet_v3_large, same count
}


def module_count(model, size=224):
    """Params and MACs by running the module with hooks (independent of sizes.py)."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            macs.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            macs.append(m.in_features * m.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hs:
        h.remove()
    return sum(p.numel() for p in model.parameters()), sum(macs)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_sizes_from_spec_and_module(name):
    spec = specs.BUILTIN_SPECS[name]
    assert count(spec) == EXACT[name]
    assert module_count(SpecNet(spec)) == EXACT[name]


def test_sizes_follow_resolution_and_classes():
    spec = specs.MOGA_A.with_classes(10)
    assert count(spec, 320) == module_count(SpecNet(spec), 320)


@pytest.mark.parametrize("name", ["moga_a", "moga_b", "moga_c"])
def test_published_choice_vectors_encode_the_rows(name):
    vec = specs.PUBLISHED_CHOICES[name]
    assert specs.to_choices(specs.BUILTIN_SPECS[name]) == list(vec)
    assert specs.from_choices(vec, name=name) == specs.BUILTIN_SPECS[name]


def test_every_choice_round_trips():
    for c in range(specs.NUM_CHOICES):
        t, k, se = specs.choice_to_block(c)
        assert specs.block_to_choice(t, k, se) == c
    vec = list(range(12)) + [0, 11]
    assert specs.to_choices(specs.from_choices(vec)) == vec


def test_table1_indices():
    assert specs.choice_to_block(0) == (3, 3, False)
    assert specs.choice_to_block(5) == (3, 7, True)
    assert specs.choice_to_block(8) == (6, 5, False)
    assert specs.choice_to_block(11) == (6, 7, True)


def test_moga_a_matches_table2_se_layers():
    se_layers = [i for i, r in enumerate(specs.MOGA_A.rows[2:16], start=1) if r.se]
    assert se_layers == [4, 5, 6, 9, 13, 14]


def _with_row(spec, i, **kw):
    rows = list(spec.rows)
    rows[i] = specs.replace(rows[i], **kw)
    return rows


@pytest.mark.parametrize("change,pattern", [
    (dict(s=3), r"row 4 \(ir\): field 's': stride must be 1 or 2, got 3"),
    (dict(k=4), r"row 4 \(ir\): field 'k': kernel must be an odd positive integer, got 4"),
    (dict(nl="GELU"), r"row 4 \(ir\): field 'nl': unknown activation 'GELU'"),
    (dict(cin=99), r"row 4 \(ir\): field 'cin': channel mismatch: the previous row outputs 24 channels, "
                   r"this row says its input has 99"),
    (dict(op="mbconv"), r"row 4 \(mbconv\): field 'op': unknown operator 'mbconv'"),
    (dict(t=0.5), r"row 4 \(ir\): field 't': expansion ratio must be >= 1"),
    (dict(c=0), r"row 4 \(ir\): field 'c'"),
])
def test_invalid_rows_name_row_and_field(change, pattern):
    with pytest.raises(SpecError, match=pattern):
        Spec("bad", _with_row(specs.MOGA_A, 4, **change))


def test_correct_cin_is_accepted():
    Spec("ok", _with_row(specs.MOGA_A, 4, cin=24))


def test_choice_index_out_of_range():
    with pytest.raises(SpecError, match=r"layer 3: field 'choice': index must be an integer in 0..11, got 12"):
        specs.from_choices([0, 0, 12] + [0] * 11)
    with pytest.raises(SpecError, match="14 searchable layers"):
        specs.from_choices([0] * 13)


def test_structure_errors():
    with pytest.raises(SpecError, match="the last row must be 'fc'"):
        Spec("x", specs.MOGA_A.rows[:-1])
    with pytest.raises(SpecError, match=r"row 3 \(fc\): field 'op': 'fc' must come after the pool row"):
        Spec("x", specs.MOGA_A.rows[:3] + (Row("fc", c=10),))
    with pytest.raises(SpecError, match="options: field 'se_act'"):
        Spec("x", specs.MOGA_A.rows, specs.Options(se_act="swish"))


def test_to_choices_rejects_specs_outside_the_space():
    with pytest.raises(SpecError, match="ir rows"):
        specs.to_choices(specs.EFFICIENTNET_LITE0)
    with pytest.raises(SpecError, match="15 ir rows"):
        specs.to_choices(specs.MOBILENETV3_LARGE)
    with pytest.raises(SpecError, match="stem, head or options"):
        specs.to_choices(Spec("x", specs.MOGA_A.rows, specs.Options(bn_eps=1e-3)))


def test_reference_networks_use_options_not_special_cases():
    mnv3 = specs.MOBILENETV3_LARGE
    assert mnv3.options.se_round == 8 and mnv3.options.se_act == "RE"
    assert mnv3.options.squeeze_width(72) == 24 and mnv3.options.squeeze_width(960) == 240
    assert specs.MOGA_A.options.squeeze_width(120) == 30  # MoGA: no rounding
    lite = specs.EFFICIENTNET_LITE0
    assert (lite.options.bn_eps, lite.options.padding) == (1e-3, "same")
    assert {r.nl for r in lite.rows if r.nl} == {"R6"}
    m = SpecNet(mnv3)
    se = m.features[4].se  # first SE layer: exp 72 -> squeeze 24, ReLU inside
    assert se.reduce.out_channels == 24 and isinstance(se.act, torch.nn.ReLU)
    assert m.features[1].expand is None and m.features[1].residual  # exp 16 == in 16
    moga = SpecNet(specs.MOGA_A)
    assert not moga.features[1].residual  # MoGA's first block has no residual


def test_spec_file_round_trip(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(specs.MOGA_A.to_json())
    assert specs.load_spec(p) == specs.MOGA_A
    p.write_text(specs.MOBILENETV3_LARGE.to_json())
    assert specs.load_spec(p) == specs.MOBILENETV3_LARGE
    p.write_text(json.dumps({"name": "c", "choices": list(specs.PUBLISHED_CHOICES["moga_c"])}))
    assert specs.load_spec(p).rows == specs.MOGA_C.rows


def test_spec_file_table_rows_and_errors(tmp_path):
    rows = [["conv", 3, 1, 16, False, "HS", 2], ["ir", 3, 4, 24, True, "RE", 2], ["conv", 1, 1, 64, False, "HS", 1],
            {"op": "pool"}, {"op": "fc", "c": 10}]
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps({"rows": rows}))
    s = specs.load_spec(p)
    assert s.name == "tiny" and s.num_classes == 10
    assert SpecNet(s)(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    rows[1][6] = 3
    p.write_text(json.dumps({"rows": rows}))
    with pytest.raises(SpecError, match=r"row 1 \(ir\): field 's'"):
        specs.load_spec(p)
    p.write_text(json.dumps({"rows": [["conv", 3, 1]]}))
    with pytest.raises(SpecError, match="row 0: a list row needs the 7 Table-2 columns"):
        specs.load_spec(p)
    p.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        specs.load_spec(p)
    with pytest.raises(SpecError, match="does not exist"):
        specs.load_spec(tmp_path / "missing.json")
