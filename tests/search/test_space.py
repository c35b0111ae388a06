"""Loading and validating space files: what is accepted, and the one-line errors."""

import math
import re

import pytest

from search.space import Block, Choice, Dist, Fixed, SpaceError, load_space

MINIMAL = "architecture: {depth: 1, layers: {filters: {count: 8, size: 3}}}\n"

THREE_LAYERS = """
architecture:
  depth: {choice: [2, 3]}
  layers:
    - {filters: {count: 8, size: 3}, pool: {kind: lp, order: 2, size: 3}}
    - {filters: {count: 8, size: 3}, pool: {kind: lp, order: 2, size: 3}}
    - {filters: {count: 8, size: 3}, pool: {kind: lp, order: ORDER, size: 3}}
"""

ORDER = "architecture.layers[2].pool.order"

BAD = [
    # (space text, key path, message)
    (THREE_LAYERS.replace("ORDER", '"ten"'), ORDER, 'expected a number >= 1 or a distribution, got "ten"'),
    (THREE_LAYERS.replace("ORDER", "0.5"), ORDER, "expected a number >= 1 or a distribution, got 0.5"),
    (
        THREE_LAYERS.replace("ORDER", "{uniform: [5, 1]}"),
        ORDER + ".uniform",
        r"`low < high` must hold, but got \(low=5, high=1\)",
    ),
    (
        THREE_LAYERS.replace("ORDER", "{choice: []}"),
        ORDER + ".choice",
        "expected a non-empty list of options, got an empty list",
    ),
    (
        THREE_LAYERS.replace("ORDER", "{normal: [2, 1]}"),
        ORDER + ".normal",
        r"normal \(mu=2, sigma=1\) can give values outside the allowed range: a number >= 1",
    ),
    (
        THREE_LAYERS.replace("ORDER", "{choice: [1, {loguniform: [0.5, 3]}]}"),
        ORDER + ".choice[1].loguniform",
        "can give values outside the allowed range",
    ),
    (
        THREE_LAYERS.replace("ORDER", "{loguniform: [0, 3]}"),
        ORDER + ".loguniform",
        r"`low > 0` must hold, but got \(low=0, high=3\)",
    ),
    (
        THREE_LAYERS.replace("ORDER", "{uniform: [1]}"),
        ORDER + ".uniform",
        r"expected \[low, high\] \(numbers\)",
    ),
    (THREE_LAYERS.replace("ORDER", "{uniform: [1, 3], q: 2}"), ORDER, "a uniform takes no other keys"),
    (
        MINIMAL.replace("size: 3", "size: 3, colour: red"),
        "architecture.layers.filters.colour",
        "unknown key; expected one of count, size, stride, init, trainable",
    ),
    (
        MINIMAL.replace("size: 3", "size: -3"),
        "architecture.layers.filters.size",
        "expected an integer >= 1 or a distribution, got -3",
    ),
    (
        MINIMAL.replace("count: 8", "count: 8.5"),
        "architecture.layers.filters.count",
        "expected an integer >= 1 or a distribution, got 8.5",
    ),
    (
        MINIMAL.replace("count: 8", "count: {uniform: [8, 16]}"),
        "architecture.layers.filters.count.uniform",
        "use int, a choice, or a q-distribution with an integer q; uniform gives fractions",
    ),
    (
        MINIMAL.replace(", size: 3", ""),
        "architecture.layers.filters.size",
        "required: expected an integer >= 1",
    ),
    (
        MINIMAL.replace("}}}", "}, activation: sigmoid}}"),
        "architecture.layers.activation.kind",
        'expected one of identity, clip, relu, leaky_relu, gelu, silu, tanh, got "sigmoid"',
    ),
    (
        MINIMAL.replace("}}}", "}, activation: {kind: {choice: [relu, gelu]}}}}"),
        "architecture.layers.activation.kind",
        "to search over kinds, make the whole block a choice of blocks",
    ),
    (
        MINIMAL.replace("depth: 1", "depth: 3").replace("count: 8", "count: {per_layer: [8, 16]}"),
        "architecture.layers.filters.count.per_layer",
        r"one value per layer \(at least 3, as depth can be 3\), got 2 values",
    ),
    (
        "architecture: {depth: 1, layers: [{filters: {count: {per_layer: [8]}, size: 3}}]}",
        "architecture.layers[0].filters.count",
        "per_layer is only allowed where architecture.layers is one mapping",
    ),
    (
        "architecture: {depth: {choice: [1, 2]}, layers: [{filters: {count: 8, size: 3}}]}",
        "architecture.layers",
        r"expected at least 2 layers \(depth can be 2\), got 1",
    ),
    (MINIMAL + "constraints: {max_params: {choice: [1, 2]}}", "constraints.max_params", "cannot be searched"),
    (
        MINIMAL + "constraints: {max_macs: -1}",
        "constraints.max_macs",
        "expected an integer >= 1 or null, got -1",
    ),
    (MINIMAL + "data: {dataset: imagenet}", "data.dataset", "unknown dataset 'imagenet'; known: digits, "),
    (MINIMAL + "data: {input_shape: [28, 28]}", "data.input_shape", "a list of 3 positive integers or null"),
    (MINIMAL + "training: {lr: 0}", "training.lr", "expected a number > 0 or a distribution, got 0"),
    (
        MINIMAL + "training: {optimizer: {kind: sgd, beta1: 0.9}}",
        "training.optimizer.beta1",
        "unknown key; expected one of kind, momentum, nesterov",
    ),
    (
        MINIMAL + "training: {epochs: true}",
        "training.epochs",
        "expected an integer >= 1 or a distribution, got true",
    ),
    (
        MINIMAL + "training: {augmentation: {hflip: 1}}",
        "training.augmentation.hflip",
        "expected true or false",
    ),
    (MINIMAL + "trainig: {epochs: 1}", "trainig", "unknown key; expected one of name, description, data"),
    (
        MINIMAL + "search: {final: {top: 1, training: {lr: {loguniform: [1e-3, 1e-2]}}}}",
        "search.final.training.lr",
        "this setting cannot be searched",
    ),
    (
        MINIMAL + "search: {final: {top: 1, training: {augmentation: {flip: true}}}}",
        "search.final.training.augmentation.flip",
        "unknown key; expected one of hflip, translate, cutout",
    ),
    (
        MINIMAL + "search: {final: {top: 1, training: {epochs: 30}}}",
        "search.final.training.epochs",
        "the final stage chooses the epochs: give search.final.epochs",
    ),
    (
        MINIMAL + "search: {final: {top: 1, training: {mode: screen}}}",
        "search.final.training.mode",
        "the mode cannot change here",
    ),
    (MINIMAL + "search: {final: {top: 1, training: 0.1}}", "search.final.training", "expected a mapping"),
    (MINIMAL.replace("depth: 1", "depth: 0"), "architecture.depth", "expected an integer >= 1"),
    (
        MINIMAL.replace("depth: 1", "depth: {loguniform: [1, 3]}"),
        "architecture.depth.loguniform",
        "loguniform gives fractions",
    ),
    (
        MINIMAL.replace("depth: 1", "depth: {choice: [1, 1]}"),
        "architecture.depth.choice",
        r"lists a depth twice: \[1, 1\]",
    ),
    (
        "architecture: {depth: 1, layers: 3}",
        "architecture.layers",
        "expected a mapping .* or a list .*, got 3",
    ),
    ("architecture: {depth: 1}", "architecture.layers", "required"),
    ("name: x\n", "architecture", "required"),
]


def write(tmp_path, text, name="x.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,key,message", BAD, ids=[f"{i}:{b[1]}" for i, b in enumerate(BAD)])
def test_bad_space_gives_one_line_naming_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError, match=f"^{re.escape(str(path))}: {re.escape(key)}: .*{message}") as e:
        load_space(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "architecture:\n  depth: 1\n  depth: 2\n  layers: {}\n",
            r"line 3, column 3: .*duplicate key 'depth'",
        ),
        ("architecture: {depth: 1, layers: {filters: {count: 8]}}\n", r"line 1, column \d+: malformed YAML"),
        ("architecture:\n\tdepth: 1\n", r"line 2, column 1: malformed YAML"),
        ("- 1\n- 2\n", "expected a mapping of name, .* at the top, got a list of 2 items"),
        (
            "architecture: !!python/object:os.system {}\n",
            "line 1, column 15: malformed YAML: could not determine",
        ),
    ],
)
def test_malformed_yaml_gives_its_position(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError, match=f"^{re.escape(str(path))}: {message}"):
        load_space(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="nope.yaml: no such file"):
        load_space(tmp_path / "nope.yaml")


def test_defaults_are_filled_and_values_typed(tmp_path):
    space = load_space(write(tmp_path, MINIMAL + "training: {lr: 1e-3, weight_decay: 5e-4}\n"))
    assert space.name == "x" and space.depths == (1,)
    (layer,) = space.layers
    f = layer.fields
    assert f["filters"].fields["stride"] == Fixed(1)
    assert f["filters"].fields["init"] == Fixed("kaiming_normal")
    assert f["activation"] == Block({"kind": Fixed("relu")})
    assert f["pool"] == Block({"kind": Fixed("none")})
    assert f["padding"] == Fixed("valid")
    assert space.training.fields["lr"] == Fixed(0.001)  # 1e-3 is a number, not the string "1e-3"
    assert space.training.fields["epochs"] == Fixed(10)
    assert space.input_norm == Block({"kind": Fixed("none")})
    assert space.data == {
        "dataset": "fashion-mnist",
        "input_shape": None,
        "subset": None,
        "validation": 0.1,
        "split_seed": 0,
    }


def test_numbers_are_cast_to_the_field_type(tmp_path):
    text = MINIMAL.replace("}}}", "}, pool: {kind: lp, order: {choice: [1, 2]}, size: 3.0}}}")
    pool = load_space(write(tmp_path, text)).layers[0].fields["pool"].fields
    assert pool["order"] == Choice((Fixed(1.0), Fixed(2.0)))
    assert isinstance(pool["order"].options[0].value, float)
    assert pool["size"] == Fixed(3) and isinstance(pool["size"].value, int)


def test_infinite_clip_bounds_mean_no_bound(tmp_path):
    text = MINIMAL.replace("}}}", "}, activation: {kind: clip, min: {choice: [-.inf, 0]}, max: .inf}}}")
    act = load_space(write(tmp_path, text)).layers[0].fields["activation"].fields
    assert act["min"] == Choice((Fixed(None), Fixed(0.0)))
    assert act["max"] == Fixed(None)


def test_per_layer_values_and_shared_specs(tmp_path):
    text = """
architecture:
  depth: {int: [1, 3]}
  layers:
    filters: {count: {per_layer: [8, {choice: [16, 32]}, {int: [4, 6]}]}, size: 3}
"""
    space = load_space(write(tmp_path, text))
    assert space.depths == (1, 2, 3)
    counts = [layer.fields["filters"].fields["count"] for layer in space.layers]
    assert counts == [Fixed(8), Choice((Fixed(16), Fixed(32))), Dist("int", (4.0, 6.0), True)]


def test_kind_shorthand_and_block_choices(tmp_path):
    text = MINIMAL.replace("}}}", "}, norm: {choice: [none, batch, {kind: divisive, size: 3}]}}}")
    norm = load_space(write(tmp_path, text)).layers[0].fields["norm"]
    assert [o.fields["kind"].value for o in norm.options] == ["none", "batch", "divisive"]
    assert norm.options[2].fields["stretch"] == Fixed(1.0)


def test_constraints_accept_readable_numbers(tmp_path):
    space = load_space(write(tmp_path, MINIMAL + "constraints: {max_params: 2_000_000, max_macs: 1e9}\n"))
    assert space.constraints.max_params == 2_000_000
    assert space.constraints.max_macs == 10**9 and isinstance(space.constraints.max_macs, int)
    assert space.constraints.max_features is None


def test_distributions_keep_natural_units(tmp_path):
    space = load_space(write(tmp_path, MINIMAL + "training: {lr: {loguniform: [1e-4, 1e-1]}}\n"))
    lr = space.training.fields["lr"]
    assert lr == Dist("loguniform", (1e-4, 0.1), False)
    assert math.isclose(lr.args[0], 1e-4)


# ---------------------------------------------------------------- search.points

POINTED = """
architecture:
  depth: {choice: [1, 2]}
  layers:
    filters: {count: {per_layer: [{choice: [8, 16]}, {choice: [16, 32]}]}, size: 3, init: kaiming_normal}
    pool: {kind: max, size: 2, stride: 2}
    padding: same
training:
  lr: {loguniform: [1e-4, 1e-1]}
  epochs: 2
search:
  points: POINTS
"""

A_POINT = "{name: small, architecture: {layers: [{filters: {count: 8}}]}, training: {lr: 0.01}}"


def pointed(tmp_path, points):
    return load_space(write(tmp_path, POINTED.replace("POINTS", points)))


def test_points_take_the_spaces_fixed_values_and_give_what_it_searches(tmp_path):
    two_layers = (
        "{architecture: {layers: [{filters: {count: 16}}, {filters: {count: 32}}]}, training: {lr: 0.001}}"
    )
    space = pointed(tmp_path, f"[{A_POINT}, {two_layers}]")
    small, two = space.points
    assert (small.name, two.name) == ("small", "1")  # unnamed: its index
    assert small.space.depths == (1,)
    layer = small.space.layers[0].fields
    assert layer["padding"] == Fixed("same")  # the space's, left out of the point
    assert layer["filters"].fields["count"] == Fixed(8) and layer["filters"].fields["init"] == Fixed(
        "kaiming_normal"
    )
    assert small.space.training.fields["lr"] == Fixed(0.01) and small.space.training.fields[
        "epochs"
    ] == Fixed(2)
    assert two.space.depths == (2,) and two.space.layers[1].fields["filters"].fields["count"] == Fixed(32)


@pytest.mark.parametrize(
    "points,key,message",
    [
        ("{layers: []}", "search.points", "expected a list of configurations, got a mapping"),
        ("[3]", "search.points[0]", "expected a mapping with keys name, architecture, training, got 3"),
        (f"[{A_POINT.replace('name: small', 'nme: small')}]", "search.points[0].nme", "unknown key"),
        (
            "[{architecture: {layers: {filters: {count: 8}}}}]",
            "search.points[0].architecture",
            "expected a mapping with layers as a list",
        ),
        # lr is searched: the point must say which
        (
            "[{architecture: {layers: [{filters: {count: 8}}]}}]",
            "search.points[0].training.lr",
            "the point must give a value here",
        ),
        (f"[{A_POINT}, {A_POINT}]", "search.points", "two points are named 'small'"),
        (
            "[{architecture: {layers: [{filters: {count: -8}}]}, training: {lr: 0.01}}]",
            "search.points[0]: architecture.layers[0].filters.count",
            "expected an integer >= 1",
        ),
    ],
)
def test_a_bad_point_names_its_index_and_key(tmp_path, points, key, message):
    with pytest.raises(SpaceError, match=f"{re.escape(key)}: .*{re.escape(message)}") as e:
        pointed(tmp_path, points)
    assert "\n" not in str(e.value)
