"""The current leaders' published numbers (analysis/references/leaders_*.csv, ../shared/reference-numbers.md §G):
spot checks transcribed from the authors' READMEs, every protocol caveat carried, and ``--reference leaders``
beside a table's cells."""
import pytest

from kdsuite.analysis import references
from kdsuite.analysis.cli_table import render_table
from kdsuite.analysis.tables import comparison, runs_frame
from tests.test_tables import _rec

PAIRS = ["cifar_resnet8x4", "cifar_wrn_16_2", "cifar_resnet20", "cifar_vgg8", "cifar_shufflenetv2"]


def _values(df, method):
    sub = df[df["method"] == method].set_index("student_arch")["value"]
    return [float(sub[a]) if a in sub else None for a in PAIRS]


def test_the_five_pairs_as_the_readmes_print_them():
    df = references.load("leaders_cifar100")
    assert _values(df, "kd+ls") == [76.62, 76.11, 71.43, 74.36, 75.56]
    assert _values(df, "dkd+ls") == [77.01, 76.39, 72.32, 74.81, 77.37]
    assert _values(df, "mlkd+ls") == [78.28, 76.95, 72.33, 75.22, 78.76]
    assert _values(df, "ctkd") == [73.39, 75.45, 71.19, 73.52, 75.37]
    assert _values(df, "simkd") == [78.08, None, None, None, None]
    assert _values(df, "reviewkd") == [75.63, 76.12, 71.89, None, 77.78]
    im = references.load("leaders_imagenet")
    assert sorted(im[im["student_arch"] == "resnet18"].set_index("method")["value"].items()) == \
        [("ctkd", 71.32), ("wkd", 72.49), ("wkd_f", 72.50), ("wkd_lf", 72.76)]


def test_protocol_caveats_travel_with_the_numbers():
    df = references.load("leaders")
    for method in ("mlkd", "mlkd+ls"):
        assert df[df["method"] == method]["note"].str.contains("2 views per step").all()
        assert df[df["method"] == method]["note"].str.contains("480 epochs").all()
    assert df[df["method"] == "simkd"]["note"].str.contains("teacher head at inference").all()
    assert df[df["method"] == "reviewkd"]["source"].str.contains(r"\[S\]").all()
    assert df["note"].str.contains("epoch policy not stated").all() and (df["epoch_policy"] == "").all()


@pytest.mark.parametrize("method,published", [("ctkd", 73.39), ("simkd", 78.08), ("reviewkd", 75.63)])
def test_reference_leaders_puts_the_published_number_beside_the_cell(method, published):
    recs = [_rec(method, s, v, student="cifar_resnet8x4", teachers=("cifar_resnet32x4",), dataset="cifar100")
            for s, v in enumerate([74.0, 75.0])]
    t = references.attach(comparison(runs_frame(recs), "last_top1"), "leaders", "cifar100")
    (cell,) = [v for (label, _), v in t["refs"].items()]
    assert cell["value"] == published
    md = render_table(recs, "methods", "md", "last", reference="leaders")
    assert f"pub. {published:.2f}" in md
