import torch

from midas_service.export.network import build_model
from midas_service.export.weights import official_layout, random_state_dict


def test_state_dict_matches_the_official_key_file_entry_by_entry():
    layout = official_layout()
    state = build_model().state_dict()
    assert len(layout) == 482
    assert [(k, tuple(v.shape), v.dtype) for k, v in state.items()] == layout


def test_parameter_count_is_the_official_one():
    assert sum(p.numel() for p in build_model().parameters()) == 21_320_545


def test_random_weights_load_strictly_and_give_a_non_degenerate_map():
    model = build_model()
    model.load_state_dict(random_state_dict(seed=3), strict=True)
    with torch.no_grad():
        depth = model(torch.randn(1, 3, 192, 256))
    assert depth.shape == (1, 192, 256)
    assert float(depth.std()) > 1e-3 * float(depth.abs().max())


def test_residual_unit_adds_its_unmodified_input():
    from midas_service.export.network import ResidualConvUnit

    unit = ResidualConvUnit(4)
    torch.nn.init.zeros_(unit.conv2.weight)
    torch.nn.init.zeros_(unit.conv2.bias)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(unit(x), x)  # negative values survive: the first ReLU is not in-place
