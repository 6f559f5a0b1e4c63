"""Quantized distillation's deployment check (§5.7): the trained low-bit student converted to a real int8
model (torch.ao FX, CPU) is evaluated and measured for the record — quietly, leaving the run's
deterministic mode as it was."""
import warnings

import torch

from kdsuite.methods.components.lowbit import int8_deployment
from kdsuite.testing import build_parts


def test_the_int8_model_is_real_smaller_close_in_accuracy_and_quiet(digits_teachers, tmp_path, capfd):
    parts = build_parts("qkd", digits_teachers, tmp_path, epochs=3, steps=20)
    assert parts.trainer.fit().status == "finished"
    torch.use_deterministic_algorithms(True, warn_only=True)  # as a run sets it
    try:
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = int8_deployment(parts.student, parts.data.train, parts.data.val, parts.data.input_shape, repeats=3)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    err = capfd.readouterr().err
    assert "alertNotDeterministic" not in err and not [w for w in caught if "quantiz" in str(w.message)]
    # int8 weights: the state dict shrinks to about a quarter of float32's (scales and zero points aside)
    assert out["int8_size_bytes"] < 0.4 * out["fp32_size_bytes"]
    assert out["int8_latency_ms"] > 0 and out["fp32_latency_ms"] > 0 and out["int8_backend"] == "x86"
    # the same network in int8: accuracy within a few points of its float export, far above chance
    assert out["fp32_export_top1"] > 50.0
    assert abs(out["int8_top1"] - out["fp32_export_top1"]) < 5.0, out
    # and the quantized method's record carries it beside the bit widths
    rec = parts.method.record_metrics(parts)
    assert rec["bits_w"] == 4 and rec["bits_a"] == 32 and "int8_top1" in rec and "int8_error" not in rec
