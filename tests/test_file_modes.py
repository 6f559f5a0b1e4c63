"""Files kdsuite writes (records, checkpoints, teacher weights, tables, figures) get the permissions the
user's umask gives a new file (0644 under umask 022), while staying atomic."""
import os
import stat

import pytest
import torch

from kdsuite import zoo
from kdsuite.core.records import write_record
from kdsuite.core.fileio import atomic_torch_save, atomic_write_json, atomic_write_text
from kdsuite.zoo.teachers import META, WEIGHTS, save_teacher


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        expect = 0o666 & ~mask
        paths = [atomic_write_json(tmp_path / "a.json", {"x": 1}), atomic_write_text(tmp_path / "t.md", "| x |"),
                 atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "c.pt"),
                 write_record(tmp_path / "run", {"status": "running"})]
        save_teacher(zoo.create_model("cifar_resnet8", num_classes=10), tmp_path / "teacher",
                     {"arch": "cifar_resnet8", "num_classes": 10, "dataset": "digits"})
        paths += [tmp_path / "teacher" / WEIGHTS, tmp_path / "teacher" / META]
        from kdsuite.analysis.plots import _plt, _save

        fig = _plt().figure()
        paths += _save(fig, tmp_path / "fig", "f", ["png", "pdf"])
        # replacing an existing file keeps the rule (the old file's mode is not what decides)
        (tmp_path / "r.json").write_text("{}")
        os.chmod(tmp_path / "r.json", 0o600)
        paths.append(atomic_write_json(tmp_path / "r.json", {"y": 2}))
        for p in paths:
            assert stat.S_IMODE(os.stat(p).st_mode) == expect, (p, oct(os.stat(p).st_mode), oct(expect))
        assert not [p for p in tmp_path.rglob("*.tmp")]
    finally:
        os.umask(old)
