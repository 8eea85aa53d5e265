"""Benchmark specs: presets, overrides, validation errors, and the grid of cells they make."""

import pytest

from metricbench.bench import load_spec, preset_names
from metricbench.bench.grid import cells

TINY = """
name = "tiny"
datasets = ["digits"]
protocols = ["closed", "open"]
seeds = [0, 1]
[base]
train.epochs = 1
[[losses]]
name = "softmax"
[[losses]]
name = "center"
label = "center λ=0.1"
options = { center_weight = 0.1 }
"""


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_presets_load_and_every_cell_is_a_valid_config(preset):
    spec = load_spec(preset)
    grid = cells(spec)
    assert len(grid) == len(spec.datasets) * len(spec.protocols) * len(spec.losses) * len(spec.seeds)
    assert len({c.key for c in grid}) == len(grid)
    assert {c.config.loss.name for c in grid} >= {"softmax", "normsoftmax", "arcface", "center", "triplet-semihard"}
    assert all(c.config.eval.metric == "cosine" for c in grid)
    assert preset in preset_names()


def test_full_preset_covers_the_committed_grid():
    spec = load_spec("full")
    assert set(spec.datasets) == {"mnist5k", "digits"} and set(spec.protocols) == {"closed", "open"}
    assert len(spec.seeds) == 3 and spec.tune.datasets == ("mnist5k",)
    center = next(e for e in spec.losses if e.name == "center")
    assert center.options["update"] == "paper"


def test_cells_share_everything_but_the_grid_keys(tmp_path):
    spec = load_spec(write(tmp_path, TINY), ["seeds=[3]", "base.train.batch_size=64"])
    grid = cells(spec)
    assert [c.key for c in grid] == ["digits/closed/softmax/seed-3", "digits/closed/center-0.1/seed-3",
                                     "digits/open/softmax/seed-3", "digits/open/center-0.1/seed-3"]
    assert {(c.config.train.epochs, c.config.train.batch_size, c.config.seed) for c in grid} == {(1, 64, 3)}
    assert grid[1].config.loss.options == {"center_weight": 0.1} and grid[1].loss == "center λ=0.1"


def test_tuned_options_add_a_row_after_the_default_row(tmp_path):
    spec = load_spec(write(tmp_path, TINY), ["seeds=[0]"])
    grid = cells(spec, {("digits", "open", "center λ=0.1"): {"alpha": 0.2}})
    open_cells = [c for c in grid if c.protocol == "open"]
    assert [c.loss for c in open_cells] == ["softmax", "center λ=0.1", "center λ=0.1 (tuned)"]
    assert open_cells[2].tuned and open_cells[2].config.loss.options == {"center_weight": 0.1, "alpha": 0.2}


@pytest.mark.parametrize("override, message", [
    ("base.loss.name='softmax'", "base.loss is set per cell"),
    ("base.data.dataset='mnist5k'", "base.data.dataset is set per cell"),
    ("protocols=['closed', 'half']", "protocols must be among closed, open"),
    ("seeds=[]", "seeds must not be empty"),
    ("seeds=[1, 1]", "seeds has duplicates"),
    ("tune.datasets=['mnist5k']", "tune.datasets must be among datasets"),
    ("base.train.epochs=0", "train.epochs must be >= 1"),
    ("losses=[{name='softmax'}, {name='softmax'}]", "distinct labels"),
    ("losses=[{name='softmax', options={margin=1}}]", "unknown option.*'margin'"),
    ("losses=[{name='nope'}]", "nope"),
    ("workers=0", "workers must be >= 1"),
    ("losses=[{name='softmax'}, {name='triplet-semihard', options={margin='abc'}}]",
     r"^losses\[1\] \('triplet-semihard'\): loss.options.margin must be float, got 'abc'$"),
    ("base.train.epochs='x'", "^train.epochs must be int, got 'x'$"),
])
def test_bad_specs_name_what_is_wrong(tmp_path, override, message):
    with pytest.raises((ValueError, TypeError, KeyError), match=message):
        load_spec(write(tmp_path, TINY), [override])


def test_missing_spec_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a preset.*quick"):
        load_spec("no-such-preset")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(write(tmp_path, "datasets = ["))
    with pytest.raises(ValueError, match="^bench spec '.*' is a directory; expected a TOML file$"):
        load_spec(tmp_path)


def test_relative_dataset_paths_are_absolute_in_every_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write(tmp_path, TINY.replace('datasets = ["digits"]', 'datasets = ["npz:data/x.npz"]')))
    assert {c.config.data.dataset for c in cells(spec)} == {f"npz:{tmp_path / 'data' / 'x.npz'}"}


def test_extends_merges_presets_and_files_table_by_table(tmp_path):
    (tmp_path / "shared.toml").write_text('seeds = [7]\n[base]\ntrain.batch_size = 16\n')
    spec = load_spec(write(tmp_path, 'extends = ["quick", "shared.toml"]\n[base]\ntrain.epochs = 1\n'))
    assert spec.name == "spec"  # its own file's name, not a parent's
    assert spec.datasets == ("mnist5k",) and spec.seeds == (7,)  # quick's, then shared.toml's over it
    assert spec.base["train"] == {"epochs": 1, "batch_size": 16}  # tables merge key by key
    assert spec.base["eval"]["metric"] == "cosine"  # untouched keys of quick's [base] stay
    assert [e.name for e in spec.losses] == [e.name for e in load_spec("quick").losses]


def test_extends_refuses_cycles_and_bad_values(tmp_path):
    (tmp_path / "a.toml").write_text('extends = ["b.toml"]\n')
    (tmp_path / "b.toml").write_text('extends = ["a.toml"]\n')
    with pytest.raises(ValueError, match="extends itself"):
        load_spec(tmp_path / "a.toml")
    with pytest.raises(ValueError, match="extends in .* must be a list"):
        load_spec(write(tmp_path, 'extends = "quick"\n'))
    with pytest.raises(FileNotFoundError, match="'missing.toml' is neither a file nor a preset"):
        load_spec(write(tmp_path, 'extends = ["missing.toml"]\n'))
