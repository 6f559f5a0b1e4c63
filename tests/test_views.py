"""Paired multi-view data (cross-modal distillation): the digits' derived views, image folders of paired
files in the real layout, the config field ``dataset.views`` and the teachers' view end to end."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from kdsuite.experiments.config import ConfigError, config_hash, validate
from kdsuite.experiments.data import TensorLoader, build_data, cache_loader, load_digits_split

FIELDS = ("x", "y", "index", "teacher_x")


def _raw_digits(size=16):
    """The digits as build_data makes them before any view: 8×8 / 16, bilinearly resized (independent of views.py)."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images, dtype=torch.float64)[:, None] / 16.0
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def _denorm(x, mean, std):
    return x * std[0] + mean[0]


def test_digits_views_are_deterministic_distinct_and_keep_samples_and_labels():
    image = load_digits_split(16, train_fraction=0.1)
    out = {}
    for view in ("image", "edges", "thermal"):
        a, b = load_digits_split(16, train_fraction=0.1, view=view), load_digits_split(16, train_fraction=0.1, view=view)
        assert all(torch.equal(u, v) for u, v in zip(a[:4], b[:4])), view  # no randomness
        assert torch.equal(a[1], image[1]) and torch.equal(a[3], image[3]), view  # same labels, same order
        assert a[0].shape == image[0].shape == (143, 3, 16, 16)
        assert abs(float(load_digits_split(16, view=view)[0].mean())) < 1e-4  # normalised by its own statistics
        out[view] = a
    for v, w in (("image", "edges"), ("image", "thermal"), ("edges", "thermal")):
        assert (out[v][0] - out[w][0]).abs().mean() > 0.1, (v, w)
    assert torch.equal(out["image"][0], image[0])  # the default view is today's input, unchanged


def test_edges_view_is_the_sobel_gradient_magnitude():
    raw = _raw_digits()
    xtr, ytr, xte, yte, mean, std = load_digits_split(16, view="edges")
    from sklearn.model_selection import train_test_split

    from sklearn.datasets import load_digits
    tr, _ = train_test_split(np.arange(1797), test_size=0.2, random_state=0, stratify=load_digits().target)
    i = int(np.sort(tr)[5])
    img = np.pad(raw[i], 1)
    kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    want = np.zeros((16, 16))
    for r in range(16):
        for c in range(16):
            gx = sum(kx[a][b] * img[r + a, c + b] for a in range(3) for b in range(3))
            gy = sum(kx[b][a] * img[r + a, c + b] for a in range(3) for b in range(3))
            want[r, c] = math.sqrt(gx * gx + gy * gy)
    got = _denorm(xtr[5, 0].double().numpy(), mean, std)
    assert np.allclose(got, want, atol=1e-5)
    assert torch.equal(xtr[5, 0], xtr[5, 2])  # 3 identical channels, as the image view


def test_thermal_view_is_a_quarter_resolution_blur():
    raw = _raw_digits()
    xtr, _, _, _, mean, std = load_digits_split(16, view="thermal")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    tr, _ = train_test_split(np.arange(1797), test_size=0.2, random_state=0, stratify=load_digits().target)
    i = int(np.sort(tr)[7])
    blocks = raw[i].reshape(4, 4, 4, 4).mean(axis=(1, 3))  # 4×4 means of 4×4 blocks
    got = _denorm(xtr[7, 0].double().numpy(), mean, std)
    # bilinear upsampling by 4 (align_corners=False): output pixel o samples the 4×4 grid at (o + 0.5)/4 − 0.5
    def taps(o):
        u = min(max((o + 0.5) / 4 - 0.5, 0.0), 3.0)
        lo = int(math.floor(u))
        hi = min(lo + 1, 3)
        return lo, hi, u - lo

    want = np.zeros((16, 16))
    for r in range(16):
        r0, r1, fr = taps(r)
        for c in range(16):
            c0, c1, fc = taps(c)
            top = (1 - fc) * blocks[r0, c0] + fc * blocks[r0, c1]
            bottom = (1 - fc) * blocks[r1, c0] + fc * blocks[r1, c1]
            want[r, c] = (1 - fr) * top + fr * bottom
    assert np.allclose(got, want, atol=1e-5)


def test_digits_batches_carry_the_teachers_view_of_the_same_samples():
    # no validation split held out: the training set is the whole split, so `index` addresses it directly
    cfg = validate({"dataset": {"views": {"teacher": "image", "student": "edges"}, "batch_size": 50, "val_fraction": 0},
                    "method": "cm_kd", "teachers": [{"checkpoint": "x"}]})["dataset"]
    data = build_data(cfg, fields=FIELDS)
    img = load_digits_split(16, view="image")
    edg = load_digits_split(16, view="edges")
    x, y, idx, tx = next(iter(data.train))
    assert torch.equal(x, edg[0][idx]) and torch.equal(tx, img[0][idx]) and torch.equal(y, img[1][idx])
    # the teacher-output cache is filled from the teachers' view, by sample index
    cx, cy, cidx = next(iter(cache_loader(data.train, 64)))
    assert torch.equal(cx, img[0][cidx])
    # teachers are evaluated on their view of the test split, the student on its own
    tv, sv = next(iter(data.teacher_val))[0], next(iter(data.val))[0]
    assert torch.equal(tv, img[2][:len(tv)]) and torch.equal(sv, edg[2][:len(sv)])


def test_paired_crop_and_flip_are_the_same_for_both_views():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    tl = TensorLoader(x, torch.tensor([0, 1]), 2, shuffle=False, crop_pad=2, flip=True, fields=FIELDS,
                      teacher_x=-x[:, :1].clone())  # one-channel teacher view: minus the first channel
    for seed in range(5):
        tl.set_epoch_seed(seed)
        xb, _, _, tb = next(iter(tl))
        assert torch.equal(tb, -xb[:, :1])


def test_one_view_gives_the_teachers_the_students_input():
    data = build_data(validate({"dataset": {"batch_size": 16}, "method": "cm_kd", "teachers": ["x"]})["dataset"],
                      fields=FIELDS)
    x, _, _, tx = next(iter(data.train))
    assert torch.equal(x, tx) and data.teacher_val is None


# ---- config ---------------------------------------------------------------------------------------
def test_views_validation_and_normal_form():
    def v(views, method="cm_kd", teachers=("x",), name="digits"):
        return validate({"dataset": {"name": name, "views": views}, "method": method,
                         "teachers": list(teachers)})["dataset"]["views"]

    assert v({"teacher": "image", "student": "edges"}) == {"teacher": "image", "student": "edges"}
    assert v({"student": "thermal"}) == {"teacher": "thermal", "student": "thermal"}  # teachers see the student's view
    assert v({"teacher": "image", "student": "edges"}, "vanilla", ()) == {"teacher": None, "student": "edges"}
    assert v({"student": "image"}, "vanilla", ()) is None  # the digits' image alone is no views at all
    assert v({"teacher": "edges", "student": "edges"}, "kd") == {"teacher": "edges", "student": "edges"}
    # a field added later keeps the hashes of runs without views
    base = validate({})
    assert "views" not in str(sorted(__import__("kdsuite.experiments.config", fromlist=["identity"]).identity(base)["dataset"]))
    assert config_hash(base) == config_hash(validate({"dataset": {"views": {"student": "image"}}}))
    for bad, words in [({"student": "sonar"}, ["dataset.views.student", "sonar", "edges"]),
                       ({"teacher": "image"}, ["dataset.views", "student required"]),
                       ({"student": "edges", "depth": "x"}, ["dataset.views", "depth", "teacher"]),
                       ("edges", ["dataset.views", "mapping"])]:
        with pytest.raises(ConfigError) as e:
            v(bad)
        assert all(w in str(e.value) for w in words), (bad, str(e.value))
    # CIFAR has the digits' derived views (rendered from each image's luminance); its image alone is no views
    assert v({"student": "edges"}, name="cifar10") == {"teacher": "edges", "student": "edges"}
    assert v({"student": "image"}, "vanilla", (), name="cifar100") is None
    with pytest.raises(ConfigError) as e:
        v({"student": "depth"}, name="cifar10")
    assert "dataset.views.student" in str(e.value) and "edges" in str(e.value)
    with pytest.raises(ConfigError) as e:  # a method that would show its teachers the student's view
        v({"teacher": "image", "student": "edges"}, "kd")
    assert "'kd'" in str(e.value) and "cm_kd" in str(e.value) and "supervision_transfer" in str(e.value)
    with pytest.raises(ConfigError) as e:
        v({"student": "../rgb"}, name="imagefolder")
    assert "dataset.views.student" in str(e.value)


# ---- image folders of paired files ---------------------------------------------------------------
def _write(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def _paired_root(tmp_path, n=3):
    """rgb/ and depth/ views, files paired by relative path (depth as .bmp): depth = 255 − rgb, per file."""
    root = tmp_path / "data"
    value = 10
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            for i in range(n):
                _write(root / "rgb" / split / cls / f"{cls}{i}.png", value)
                _write(root / "depth" / split / cls / f"{cls}{i}.bmp", 255 - value)
                value += 7
    return root


def _folder_cfg(root, views):
    return validate({"dataset": {"name": "imagefolder", "root": str(root), "val_fraction": 0, "image_size": 8, "augment": False,
                                 "batch_size": 4, "views": views},
                     "method": "cm_kd", "teachers": ["x"]})["dataset"]


def _pixel(x):
    mean, std = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
    return (x * std[None, :, None, None] + mean[None, :, None, None]).mean((1, 2, 3)) * 255


def test_paired_image_folders_pair_files_by_relative_path(tmp_path):
    root = _paired_root(tmp_path)
    data = build_data(_folder_cfg(root, {"teacher": "depth", "student": "rgb"}), fields=FIELDS)
    assert data.num_train == 6 and data.num_classes == 2
    seen = 0
    for x, y, idx, tx in data.train:
        assert torch.allclose(_pixel(x) + _pixel(tx), torch.full((len(x),), 255.0), atol=1.5)
        assert not torch.allclose(_pixel(x), _pixel(tx), atol=1.5)
        seen += len(x)
    assert seen == 6
    # the teacher-output cache and the teachers' evaluation read the depth view
    cx, _, cidx = next(iter(cache_loader(data.train, 6)))
    assert all(_pixel(cx[k:k + 1]).item() > 127 for k in range(len(cx)))  # depth values are 255 − (10 … 80)
    tv = next(iter(data.teacher_val))[0]
    assert all(_pixel(tv[k:k + 1]).item() > 127 for k in range(len(tv)))
    # the student alone on a view: root/<view>/…, no partner needed
    solo = build_data(validate({"dataset": {"name": "imagefolder", "root": str(root), "val_fraction": 0, "image_size": 8, "augment": False,
                                            "views": {"student": "depth"}}})["dataset"])
    assert all(_pixel(xb).min() > 127 for xb, _ in solo.train)


def test_paired_image_folders_with_augmentation_crop_both_views_alike(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            for view, a in (("rgb", arr), ("ir", 255 - arr)):
                p = root / view / split / cls / "s.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(a).save(p)
    cfg = validate({"dataset": {"name": "imagefolder", "root": str(root), "val_fraction": 0, "image_size": 8, "augment": True,
                                "batch_size": 2, "views": {"teacher": "ir", "student": "rgb"}},
                    "method": "cm_kd", "teachers": ["x"]})["dataset"]
    data = build_data(cfg, fields=FIELDS)
    mean, std = torch.tensor((0.485, 0.456, 0.406))[:, None, None], torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    for seed in range(4):
        torch.manual_seed(seed)
        x, _, _, tx = next(iter(data.train))
        # 255 − a, resized by the same crop, is 255 minus a's crop (bilinear resampling is linear)
        assert torch.allclose((x * std + mean) + (tx * std + mean), torch.ones_like(x), atol=0.02)


def _move(src, dst):
    src.rename(dst)


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "depth" / "train" / "dog" / "dog1.bmp").unlink(),
     ["rgb/train/dog/dog1.png", "no partner", "depth/train/dog/dog1.<ext>"]),
    (lambda r: _move(r / "depth" / "train" / "dog" / "dog1.bmp", r / "depth" / "train" / "cat" / "dog1.bmp"),
     ["rgb/train/dog/dog1.png", "class 'dog'", "['cat']", "same class"]),
    (lambda r: _write(r / "depth" / "val" / "cat" / "extra.png", 3), ["depth/val/cat/extra.png", "no partner", "rgb"]),
    (lambda r: __import__("shutil").rmtree(r / "depth" / "val"), ["depth", "val/"]),
])
def test_unpaired_files_are_config_errors_naming_them(tmp_path, damage, words):
    root = _paired_root(tmp_path)
    damage(root)
    with pytest.raises(ConfigError) as e:
        build_data(_folder_cfg(root, {"teacher": "depth", "student": "rgb"}), fields=FIELDS)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_paired_folders_enter_the_data_identity(tmp_path):
    from kdsuite.experiments.identity import data_identity

    root = _paired_root(tmp_path)
    cfg = _folder_cfg(root, {"teacher": "depth", "student": "rgb"})
    before = data_identity(cfg)
    assert before["fingerprint"].startswith("sha256:") and "depth" in before["basis"]
    solo = validate({"dataset": {"name": "imagefolder", "root": str(root), "val_fraction": 0, "views": {"student": "rgb"}}})["dataset"]
    assert data_identity(solo)["fingerprint"] != before["fingerprint"]  # the teachers' view is part of it
    _write(root / "depth" / "train" / "cat" / "new.bmp", 1)
    _write(root / "rgb" / "train" / "cat" / "new.png", 1)
    assert data_identity(cfg)["fingerprint"] != before["fingerprint"]


# ---- tables and teacher records -------------------------------------------------------------------
def _rec(method, seed, top1, views=None, teachers=("cifar_resnet20",), category="response"):
    from kdsuite.experiments.run import pair_label

    teachers = list(teachers) if method != "vanilla" else []
    return {"run_id": f"{method}{seed}{views}", "method": method, "category": category if method != "vanilla" else "baseline",
            "scheme": "offline", "dataset": "digits", "student": "cifar_resnet8", "student_name": "resnet8",
            "teachers": teachers, "teacher_names": ["resnet20"] * len(teachers), "seed": seed,
            "pair": pair_label("cifar_resnet8", teachers, views), "variant": {}, "status": "finished",
            "config": {"dataset": {"name": "digits", "views": views}, "method": {"hparams": {}}},
            "metrics": {"last_top1": top1, "teacher_top1": [99.0] if teachers else []}}


def test_tables_compare_a_student_with_the_vanilla_student_on_its_own_view():
    from kdsuite.analysis.tables import comparison, gains, runs_frame

    cm = {"teacher": "image", "student": "edges"}
    van_edges = {"teacher": None, "student": "edges"}
    recs = [_rec("vanilla", s, v) for s, v in enumerate((90.0, 92.0))] + \
           [_rec("kd", s, v) for s, v in enumerate((95.0, 97.0))] + \
           [_rec("vanilla", s, v, van_edges) for s, v in enumerate((80.0, 84.0))] + \
           [_rec("cm_kd", s, v, cm, category="cross_modal") for s, v in enumerate((85.0, 87.0))]
    df = runs_frame(recs)
    g = gains(df).set_index("method")
    assert g.loc["kd", "vanilla"] == pytest.approx(91.0) and g.loc["cm_kd", "vanilla"] == pytest.approx(82.0)
    assert g.loc["cm_kd", "gain"] == pytest.approx(4.0)
    table = comparison(df)
    assert table["columns"] == ["resnet20→resnet8", "resnet20 (image)→resnet8 (edges)"]
    rows = {label: cells for label, _, cells in table["rows"]}
    assert rows["Student (vanilla)"]["resnet20 (image)→resnet8 (edges)"]["mean"] == pytest.approx(82.0)
    assert rows["Student (vanilla)"]["resnet20→resnet8"]["mean"] == pytest.approx(91.0)
    assert rows["cm_kd"]["resnet20→resnet8"] is None
    from kdsuite.analysis.tables import column_title

    # headers in the papers' names, each side with its view
    assert [column_title(table, c) for c in table["columns"]] == ["ResNet20→ResNet8", "ResNet20 (image)→ResNet8 (edges)"]


def test_a_teacher_is_used_on_the_view_it_was_trained_on(tmp_path):
    import json

    from kdsuite.experiments.run import resolve_teachers

    import timm

    from kdsuite.zoo.teachers import save_teacher

    folder = tmp_path / "t"
    meta = save_teacher(timm.create_model("cifar_resnet20", num_classes=10), folder,  # weights that fit the record
                        {"arch": "cifar_resnet20", "num_classes": 10, "dataset": "digits"})
    (folder / "teacher.json").write_text(json.dumps(dict(meta, view="edges")))
    cfg = validate({"method": "cm_kd", "teachers": [str(folder)],
                    "dataset": {"views": {"teacher": "edges", "student": "thermal"}}})
    resolve_teachers(cfg)  # trained on edges, shown edges
    for views in ({"teacher": "image", "student": "edges"}, None):
        cfg = validate({"method": "cm_kd", "teachers": [str(folder)], "dataset": {"views": views}})
        with pytest.raises(ConfigError) as e:
            resolve_teachers(cfg)
        assert "view 'edges'" in str(e.value) and "view 'image'" in str(e.value)
    (folder / "teacher.json").write_text(json.dumps(meta))  # records without a view saw the digits' images
    resolve_teachers(validate({"method": "cm_kd", "teachers": [str(folder)],
                               "dataset": {"views": {"teacher": "image", "student": "edges"}}}))


def test_a_grid_plans_cross_modal_students_only_on_their_teachers_view(tmp_path):
    import yaml

    from kdsuite.experiments.grid import load_grid

    spec = {"name": "cm", "output": str(tmp_path / "runs"), "defaults": {"dataset": {"name": "digits"}},
            "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet20",
                                              "dataset": {"views": {"student": "thermal"}}}]},
                       "students": {"needs": "teachers", "axes": {
                           "method": ["vanilla", "cm_kd"], "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}],
                           "dataset.views": [{"teacher": "thermal", "student": "edges"}]}}}}
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = {r.cfg["method"]["name"]: r for r in load_grid(str(f)).stages["students"]}
    assert runs["cm_kd"].cfg["dataset"]["views"] == {"teacher": "thermal", "student": "edges"}
    assert runs["vanilla"].cfg["dataset"]["views"] == {"teacher": None, "student": "edges"} and not runs["vanilla"].cfg["teachers"]
    spec["stages"]["students"]["axes"]["dataset.views"] = [{"teacher": "image", "student": "edges"}]
    f.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_grid(str(f))
    assert "teacher 't' was trained on view 'thermal'" in str(e.value) and "'image'" in str(e.value)


def test_cifar_views_pair_the_same_images_cropped_and_flipped_alike(tmp_path):
    """CIFAR (official on-disk format, real reader): the student sees the Sobel edges of each image's
    luminance, the teachers the image itself, the same sample with the same crop and flip."""
    from tests.test_data import _write_cifar

    from kdsuite.experiments.config import DEFAULTS, validate
    from kdsuite.experiments.data import CIFAR_MEAN, CIFAR_STD, build_data

    written = _write_cifar(tmp_path, "cifar10")
    ds = dict(DEFAULTS["dataset"], name="cifar10", root=str(tmp_path), download=False, verify_checksums=False,
              batch_size=16, views={"teacher": "image", "student": "edges"}, val_fraction=0)
    data = build_data(ds, "cpu", pipeline="tensor", fields=("x", "y", "index", "teacher_x"))
    m, s = torch.tensor(CIFAR_MEAN["cifar10"])[:, None, None], torch.tensor(CIFAR_STD["cifar10"])[:, None, None]
    x, _y, index, tx = next(iter(data.train))
    img = tx * s + m  # the teachers' view: the RGB image, as written (augmentation on: cropped and flipped)
    gray = 0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]
    # the student's view of the same crop: Sobel magnitude of the luminance, written here again with numpy
    k = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    g = np.pad(gray.double().numpy(), ((0, 0), (1, 1), (1, 1)))
    H, W = gray.shape[1:]
    gx = sum(k[i, j] * g[:, i:i + H, j:j + W] for i in range(3) for j in range(3))
    gy = sum(k[j, i] * g[:, i:i + H, j:j + W] for i in range(3) for j in range(3))
    edges = np.sqrt(gx ** 2 + gy ** 2)
    mean, std = data.mean[0], data.std[0]
    # the crop's padding is the pad colour of each view, so compare inside the 4-pixel border
    inner = (slice(None), slice(5, -5), slice(5, -5))
    assert np.allclose((x[:, 0] * std + mean).double().numpy()[inner], edges[inner], atol=1e-4)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # three channels kept
    # the teachers' view is the file's image itself (sample by index, possibly flipped)
    raw = written["data_batch_1"][0]
    i, idx = 0, int(index[0])
    if idx < len(raw):
        src = torch.tensor(raw[idx].reshape(3, 32, 32)).float() / 255
        assert any(torch.allclose(img[i, :, 8:-8, 8:-8], c[:, 8 + dy:-8 + dy or None, 8 + dx:-8 + dx or None], atol=1e-5)
                   for c in (src, src.flip(2)) for dy in range(-4, 5) for dx in range(-4, 5))
    # the teachers are evaluated on their view of the test split; normalisation of the derived view is its own
    assert data.teacher_val is not None and data.mean != CIFAR_MEAN["cifar10"]
    # the loader pipeline cannot render them: a clear error, and auto picks the tensor pipeline
    with pytest.raises(ConfigError, match="derived views are rendered in the tensor pipeline"):
        build_data(ds, "cpu", pipeline="loader", fields=("x", "y", "teacher_x"))
    from kdsuite.experiments.config import effective

    cfg = validate({"dataset": ds, "method": "cm_kd", "teachers": [{"checkpoint": "t"}]})
    assert effective(cfg, "cpu")["pipeline"] == "tensor"
