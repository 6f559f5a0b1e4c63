"""SimKD against the authors' code (github.com/DefangChen/SimKD: models/util.py SimKD, helper/loops.py,
scripts/run_distill.sh ``-c 0 -d 0 -b 1``, factor 2), float64 formulas written here from that code."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from kdsuite.methods.deployment import deployed_params, inference_parts
from kdsuite.methods.plugins.simkd import align
from kdsuite.testing import make
from tests.parity_helpers import real_pair


def _projected(m, x):
    """What the plugin's projector returns for the student's aligned last-stage map (recorded by a hook)."""
    seen = {}
    h = m.projector.register_forward_hook(lambda mod, i, o: seen.update(inp=i[0].detach(), out=o.detach()))
    try:
        out = m.forward_train(x, None)
    finally:
        h.remove()
    return out, seen


def test_simkd_loss_is_the_mse_of_the_projected_feature_on_the_teachers_map():
    torch.manual_seed(0)
    m = make("simkd", teachers=("cifar_wrn_16_1",))
    m.double()
    m.teacher.double()
    m.train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    out, seen = _projected(m, x)
    assert sorted(out) == ["sim"]  # -c 0 -d 0: the feature loss alone
    _, tf = m.teacher_forward(x)
    t = tf[m.key_t].double().numpy()
    p = seen["out"].numpy()
    assert p.shape == t.shape
    assert out["sim"].item() == pytest.approx(float(np.mean((p - t) ** 2)), rel=1e-12)


def test_alignment_pools_the_larger_map_to_the_smaller():
    g = torch.Generator().manual_seed(0)
    big, small = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 5, 4, 4, generator=g,
                                                                                       dtype=torch.float64)
    a, b = align(big, small)
    want = big.numpy().reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))  # 2×2 block means
    assert np.allclose(a.numpy(), want, atol=1e-12) and b is small
    a, b = align(small, big)
    assert a is small and np.allclose(b.numpy(), want, atol=1e-12)


def test_projector_is_the_authors_bottleneck_and_its_count_is_in_the_record():
    m = real_pair("simkd")  # resnet8x4 → resnet32x4: 256 → 256 channels, factor 2
    convs = [mod for mod in m.projector if isinstance(mod, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == \
        [(256, 128, (1, 1), None), (128, 128, (3, 3), None), (128, 256, (1, 1), None)]
    n_proj = 256 * 128 + 2 * 128 + 128 * 128 * 9 + 2 * 128 + 128 * 256 + 2 * 256
    n_head = 256 * 100 + 100
    n_body = sum(p.numel() for p in m.student.parameters()) - (256 * 100 + 100)  # the student's own fc unused
    parts = inference_parts(m)
    assert parts["projector"] == {"source": "method", "params": n_proj}
    assert parts["teacher0.fc"] == {"source": "teacher 0", "params": n_head}
    assert parts["student"]["params"] == n_body
    assert deployed_params(parts) == n_body + n_proj + n_head


def test_the_deployed_student_predicts_with_the_teachers_classifier_on_the_projected_feature():
    torch.manual_seed(1)
    m = make("simkd")
    x = torch.randn(3, 3, 16, 16)
    deployed = m.deployed_student().eval()
    m.eval()
    with torch.no_grad():
        logits = deployed(x).double().numpy()
        _, sf = m.student_forward(x)
        proj = m.projector(align(sf[m.key_s], m.teacher_forward(x)[1][m.key_t])[0]).double().numpy()
    fc = m.teacher.get_classifier()
    w, b = fc.weight.detach().double().numpy(), fc.bias.detach().double().numpy()
    assert np.allclose(logits, proj.mean(axis=(2, 3)) @ w.T + b, atol=1e-5)
    # the deployed model is not the student's own prediction
    assert not np.allclose(logits, m.student(x).detach().double().numpy(), atol=1e-3)


def test_the_students_own_classifier_is_not_trained_and_a_too_large_factor_is_named():
    m = make("simkd")
    ids = {id(p) for p in m.optim_groups()["student"].params}
    assert not any(id(p) in ids for p in m.student.get_classifier().parameters())
    assert all(id(p) in ids for p in m.projector.parameters())
    from kdsuite.core.errors import ConfigError
    with pytest.raises(ConfigError, match="factor = 1000"):
        make("simkd", factor=1000)


def test_a_run_records_the_deployed_parameter_count_and_the_borrowed_head(digits_teachers, tmp_path):
    from kdsuite.experiments.run import run

    rec = run({"student": "cifar_resnet8", "method": "simkd", "teachers": [digits_teachers[0]], "epochs": 2,
               "max_steps_per_epoch": 15, "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "output": {"root": str(tmp_path)}})
    assert rec["status"] == "finished"
    parts = rec["inference_parts"]
    assert set(parts) == {"student", "projector", "teacher0.fc"}
    assert parts["teacher0.fc"]["source"] == "teacher 0"
    assert rec["metrics"]["student_params"] == sum(v["params"] for v in parts.values())
    # the student network's own classifier is not part of what is deployed
    m = make("simkd")
    own_fc = sum(p.numel() for p in m.student.get_classifier().parameters())
    assert parts["student"]["params"] == sum(p.numel() for p in m.student.parameters()) - own_fc
