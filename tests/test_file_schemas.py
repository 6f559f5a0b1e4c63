"""Grid files and Slurm profiles are typed (experiments/schemas.py, slurm/profile_schema.py): a value of the
wrong shape or range is a kdsuite error (exit 2) naming the file, the field, the value and what is allowed —
never a traceback — and names (grid, run, stage, teacher key) follow one rule (core/names.py), so nothing
they name leaves the output root."""
import pytest
import yaml

from kdsuite import cli
from kdsuite.core.errors import ConfigError
from kdsuite.core.names import check_name

GOOD_STAGE = {"runs": [{"student": "cifar_resnet8", "epochs": 1}]}


def _grid(tmp_path, spec):
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _main(args, capsys):
    code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("spec, words", [
    ({"name": "g", "stages": ["a", "b"]}, ["stages = ['a', 'b']", "mapping of stage names"]),
    ({"name": "g", "defaults": [1], "stages": {"a": GOOD_STAGE}}, ["defaults = [1]", "mapping of run-config"]),
    ({"name": "g", "stages": {"a": {"runs": [1, 2]}}}, ["stages.a.runs[0] = 1", "each a mapping"]),
    ({"name": "g", "stages": {"a": {"axes": {"seed": [0, 1]}, "exclude": [1]}}},
     ["stages.a.exclude[0] = 1", "each a mapping"]),
    ({"name": "g", "output": 5, "stages": {"a": GOOD_STAGE}}, ["output = 5", "folder path"]),
    ({"name": "g", "stages": {"a": dict(GOOD_STAGE, gpu_hours_per_run=-1)}}, ["stages.a.gpu_hours_per_run = -1", ">= 0"]),
    ({"name": "g", "stages": {"a": dict(GOOD_STAGE, needs=["x"])}}, ["stages.a.needs = ['x']", "earlier stage"]),
    ({"name": "g", "stages": {"a": dict(GOOD_STAGE, colour=1)}}, ["stages.a.colour: unknown field", "allowed:"]),
    ({"name": "g", "stages": {"a": GOOD_STAGE}, "colour": 1}, ["colour: unknown field", "stages"]),
    ({"name": "g"}, ["stages: missing"]),
    ({"name": "../../escaped", "stages": {"a": GOOD_STAGE}}, ["name = '../../escaped'", "path separator"]),
    ({"name": "..", "stages": {"a": GOOD_STAGE}}, ["name = '..'", "'..'"]),
    ({"name": "g", "stages": {"../a": GOOD_STAGE}}, ["stage name", "path separator"]),
    ({"name": "g", "teachers": {"a/b": "x"}, "stages": {"a": GOOD_STAGE}}, ["teacher key", "path separator"]),
    ({"name": "g", "stages": {"a": {"runs": [{"name": "../up", "epochs": 1}]}}}, ["name = '../up'"]),
])
def test_bad_grid_files_are_named(tmp_path, capsys, spec, words):
    p = _grid(tmp_path, spec)
    code, err = _main(["grid", "plan", str(p)], capsys)
    assert code == 2, err
    assert str(p) in err or "runs[0]" in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("prof, words", [
    ({"partition": "a", "timeout_min": "forever"}, ["timeout_min = 'forever'", "integer number of minutes >= 1"]),
    ({"partition": "a", "timeout_min": -5}, ["timeout_min = -5", ">= 1"]),
    ({"partition": "a", "timeout_min": True}, ["timeout_min = True"]),
    ({"partition": 5, "timeout_min": 10}, ["partition = 5", "string"]),
    ({"partition": "a", "timeout_min": 10, "mem_gb": 0}, ["mem_gb = 0", "> 0"]),
    ({"partition": "a", "timeout_min": 10, "gpus_per_node": -1}, ["gpus_per_node = -1", ">= 0"]),
    ({"partition": "a", "timeout_min": 10, "slurm_setup": "module load x"}, ["slurm_setup = 'module load x'", "list"]),
    ({"partition": "a", "timeout_min": 10, "sbatch": [1]}, ["sbatch = [1]", "mapping"]),
    ({"timeout_min": 10, "colour": "red"}, ["partition: missing", "colour: unknown field"]),
])
def test_bad_profiles_are_named(tmp_path, capsys, prof, words):
    g = _grid(tmp_path, {"name": "g", "output": str(tmp_path / "out"), "stages": {"a": GOOD_STAGE}})
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(prof))
    code, err = _main(["grid", "launch", str(g), "--cluster", "slurm", "--profile", str(p), "--dry-run"], capsys)
    assert code == 2, err
    assert str(p) in err
    for w in words:
        assert w in err, err


def test_shipped_profiles_and_grids_are_valid():
    from kdsuite.experiments.grid import GRID_DIR
    from kdsuite.experiments.schemas import check_grid_file
    from kdsuite.core.yamlio import read_yaml_mapping
    from kdsuite.slurm.executors import PROFILE_DIR, load_profile

    for p in sorted(PROFILE_DIR.glob("*.yaml")):
        assert load_profile(p)["partition"]
    for p in sorted(GRID_DIR.glob("*.yaml")):
        check_grid_file(read_yaml_mapping(p, "grid file"), str(p))


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", ".hidden", "-x", "a b", "x" * 101, "a..b", 5, None])
def test_the_name_rule_refuses(name):
    with pytest.raises(ConfigError, match="grid.name = "):
        check_name(name, "grid.name")


@pytest.mark.parametrize("name", ["demo", "cifar100_taxonomy", "resnet34.tv_in1k", "a-b+c", "x" * 100])
def test_the_name_rule_accepts(name):
    assert check_name(name, "n") == name
