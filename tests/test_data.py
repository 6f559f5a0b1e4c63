"""Data sets: the digits default, CIFAR through torchvision's real reader on files written here in the
official pickled layout, batched crop/flip, image folders."""
import hashlib
import pickle

import numpy as np
import pytest
import torch

from kdsuite.experiments.config import ConfigError
from kdsuite.experiments.data import TensorLoader, build_data, load_digits_split, random_crop_flip
from kdsuite.experiments.config import DEFAULTS


def _ds(**kw):
    d = dict(DEFAULTS["dataset"])
    d.update(kw)
    return d


def test_digits_split_is_fixed_stratified_and_normalised():
    xtr, ytr, xte, yte, mean, std = load_digits_split(16)
    assert xtr.shape == (1437, 3, 16, 16) and xte.shape == (360, 3, 16, 16)
    again = load_digits_split(16)
    assert torch.equal(xtr, again[0]) and torch.equal(yte, again[3])
    counts_tr = torch.bincount(ytr, minlength=10).float()
    counts_te = torch.bincount(yte, minlength=10).float()
    assert (counts_te / counts_tr).std() < 0.02  # same class proportions in both splits
    assert abs(float(xtr.mean())) < 1e-4 and abs(float(xtr.std()) - 1) < 1e-3
    # no image is in both splits
    flat_tr = {hashlib.md5(x.numpy().tobytes()).hexdigest() for x in xtr}
    dup = sum(hashlib.md5(x.numpy().tobytes()).hexdigest() in flat_tr for x in xte)
    assert dup <= 2  # the digits set itself holds a couple of identical images


def test_tensor_loader_epoch_seed_fixes_order_and_covers_every_sample():
    x = torch.arange(10).float()[:, None, None, None].expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    tl = TensorLoader(x, y, 4, shuffle=True)
    tl.set_epoch_seed(3)
    a = torch.cat([b for _, b in tl])
    tl.set_epoch_seed(3)
    b = torch.cat([b for _, b in tl])
    tl.set_epoch_seed(4)
    c = torch.cat([b for _, b in tl])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a.tolist()) == list(range(10)) and len(tl) == 3


def test_random_crop_flip_is_a_crop_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=g)
    out = random_crop_flip(x, pad=2, flip=True, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        found = False
        for dy in range(5):
            for dx in range(5):
                crop = padded[i, :, dy:dy + 8, dx:dx + 8]
                if torch.equal(out[i], crop) or torch.equal(out[i], crop.flip(2)):
                    found = True
        assert found, f"sample {i} is not a (flipped) crop of its padded image"


def _write_cifar(root, name, n_train=20, n_test=10):
    """Files in the official layout: pickled dicts with uint8 `data` (N, 3072) and labels."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        key, meta_name, meta_key, classes = "labels", "batches.meta", "label_names", 10
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        files = ["train", "test"]
        key, meta_name, meta_key, classes = "fine_labels", "meta", "fine_label_names", 100
    labels_seen = {}
    for f in files:
        n = n_test if "test" in f else n_train
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n).tolist()
        labels_seen[f] = (data, labels)
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": data, key: labels}, fh)
    with open(folder / meta_name, "wb") as fh:
        pickle.dump({meta_key: [f"c{i}" for i in range(classes)]}, fh)
    return labels_seen


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_official_layout_without_checksums(tmp_path, name):
    written = _write_cifar(tmp_path, name)
    data = build_data(_ds(name=name, root=str(tmp_path), download=False, verify_checksums=False,
                          batch_size=8, augment=False, val_fraction=0), "cpu")
    assert data.num_classes == (10 if name == "cifar10" else 100) and data.input_shape == (3, 32, 32)
    n_train = 100 if name == "cifar10" else 20
    assert data.num_train == n_train
    x, y = next(iter(data.val))
    test_data, test_labels = written["test_batch" if name == "cifar10" else "test"]
    # first test image, decoded by hand from the row-major (3, 32, 32) layout and normalised
    from kdsuite.experiments.data import CIFAR_MEAN, CIFAR_STD
    img = test_data[0].reshape(3, 32, 32).astype(np.float64) / 255
    want = (img - np.array(CIFAR_MEAN[name])[:, None, None]) / np.array(CIFAR_STD[name])[:, None, None]
    assert np.allclose(x[0].numpy(), want, atol=1e-5)
    assert y[:len(test_labels)].tolist() == test_labels[:len(y)]


def test_cifar_checksum_check_stays_on_by_default(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    with pytest.raises(ConfigError, match="verify_checksums"):
        build_data(_ds(name="cifar10", root=str(tmp_path), download=False), "cpu")


def test_cifar_tensor_pipeline_matches_loader_pipeline(tmp_path):
    _write_cifar(tmp_path, "cifar100")
    a = build_data(_ds(name="cifar100", root=str(tmp_path), download=False, verify_checksums=False,
                       augment=False, pipeline="tensor", eval_batch_size=10, val_fraction=0), "cpu")
    b = build_data(_ds(name="cifar100", root=str(tmp_path), download=False, verify_checksums=False,
                       augment=False, pipeline="loader", eval_batch_size=10, val_fraction=0), "cpu")
    xa, ya = next(iter(a.val))
    xb, yb = next(iter(b.val))
    assert torch.allclose(xa, xb, atol=1e-6) and torch.equal(ya, yb)


def test_cifar_image_size_resizes_in_the_loader_and_is_refused_by_the_tensor_pipeline(tmp_path):
    written = _write_cifar(tmp_path, "cifar100")
    kw = dict(name="cifar100", root=str(tmp_path), download=False, verify_checksums=False, augment=False,
              eval_batch_size=10, val_fraction=0, image_size=64)
    data = build_data(_ds(pipeline="loader", **kw), "cpu")
    assert data.input_shape == (3, 64, 64)
    x, _ = next(iter(data.val))
    from kdsuite.experiments.data import CIFAR_MEAN, CIFAR_STD
    img = torch.tensor(written["test"][0][0].reshape(3, 32, 32), dtype=torch.float64)[None] / 255
    up = torch.nn.functional.interpolate(img, size=(64, 64), mode="bilinear", align_corners=False)[0]
    want = (up - torch.tensor(CIFAR_MEAN["cifar100"], dtype=torch.float64)[:, None, None]) / \
        torch.tensor(CIFAR_STD["cifar100"], dtype=torch.float64)[:, None, None]
    assert x.shape[1:] == (3, 64, 64)
    assert (x[0].double() - want).abs().max() < 0.05  # PIL's bilinear on uint8 vs float64 interpolation
    with pytest.raises(ConfigError, match=r"dataset.image_size = 64.*pipeline: loader"):
        build_data(_ds(pipeline="tensor", **kw), "cpu")


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 40, 3), 40 * i + (c == "dog") * 100, dtype=np.uint8)).save(d / f"{i}.png")
    data = build_data(_ds(name="imagefolder", root=str(tmp_path), image_size=32, batch_size=2, val_fraction=0), "cpu")
    assert data.num_classes == 2 and data.input_shape == (3, 32, 32)
    x, y = next(iter(data.val))
    assert x.shape[1:] == (3, 32, 32) and set(y.tolist()) <= {0, 1}


def test_missing_imagefolder_split_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="train/"):
        build_data(_ds(name="imagefolder", root=str(tmp_path)), "cpu")


def test_batch_fields_index_and_same_class_pair():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (30,), generator=g)
    x = torch.arange(30).float()[:, None, None, None].expand(30, 1, 2, 2).contiguous()  # x encodes its index
    tl = TensorLoader(x, y, 8, shuffle=True, fields=("x", "y", "index", "pair_x"))
    tl.set_epoch_seed(1)
    seen = []
    for xb, yb, idx, pair in tl:
        assert torch.equal(xb[:, 0, 0, 0].long(), idx) and torch.equal(y[idx], yb)
        partner = pair[:, 0, 0, 0].long()
        assert torch.equal(y[partner], yb)  # the partner is of the same class
        seen += idx.tolist()
    assert sorted(seen) == list(range(30))


def test_fields_dataset_for_dataloaders():
    from kdsuite.experiments.data import FieldsDataset

    y = [0, 1, 0, 1, 2, 2]
    base = [(torch.tensor([float(i)]), c) for i, c in enumerate(y)]
    ds = FieldsDataset(base, y, ("x", "y", "index", "pair_x"))
    for i in range(6):
        x, c, idx, pair = ds[i]
        assert idx == i and c == y[i] and y[int(pair.item())] == y[i]
    with pytest.raises(ValueError, match="batch_fields"):
        FieldsDataset(base, y, ("x", "index"))


def test_tensor_pipeline_pads_with_the_colour_torchvision_pads_with(tmp_path):
    """torchvision pads the raw image with black before normalising; the batched crop must pad the
    normalised tensor with that same value, (0 − mean)/std, not with 0 (the mean colour)."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    from kdsuite.experiments.data import CIFAR_MEAN, CIFAR_STD

    _write_cifar(tmp_path, "cifar10")
    data = build_data(_ds(name="cifar10", root=str(tmp_path), download=False, verify_checksums=False,
                          augment=True, pipeline="tensor"), "cpu")
    raw = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    ref = T.Compose([T.Pad(4), T.ToTensor(), T.Normalize(CIFAR_MEAN["cifar10"], CIFAR_STD["cifar10"])])(raw)
    assert torch.allclose(data.train.pad_fill, ref[:, 0, 0], atol=1e-5)
    x = torch.full((64, 3, 8, 8), 5.0)
    out = random_crop_flip(x, pad=2, flip=False, generator=torch.Generator().manual_seed(0),
                           fill=data.train.pad_fill)
    for c in range(3):
        values = set(out[:, c].flatten().tolist())
        assert values <= {5.0, float(data.train.pad_fill[c])} and len(values) == 2


def test_every_training_source_states_the_batch_source_protocol():
    """The trainer reads training data only through kdsuite.engine.batches.BatchSource: the digits
    TensorLoader is one as it is, a DataLoader is wrapped (its generator re-seeded per epoch, so the
    order follows the epoch seed), a list replays its batches; anything else is refused by name."""
    from kdsuite.engine.batches import BatchSource, FixedBatches, LoaderSource, as_batch_source

    b = build_data(_ds(), "cpu")
    assert isinstance(b.train, BatchSource) and as_batch_source(b.train) is b.train and b.train.sharded is False
    ds = torch.utils.data.TensorDataset(torch.arange(20.0), torch.arange(20))
    g = torch.Generator()
    src = as_batch_source(torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True, generator=g))
    assert isinstance(src, LoaderSource) and len(src) == 4

    def order(seed):
        src.set_epoch_seed(seed)
        return torch.cat([x for x, _ in src]).tolist()

    assert order(3) == order(3) and order(3) != order(4) and sorted(order(3)) == list(range(20))
    assert isinstance(as_batch_source([1, 2]), FixedBatches) and list(as_batch_source([1, 2])) == [1, 2]
    with pytest.raises(TypeError, match="set_epoch_seed"):
        as_batch_source(iter([1, 2]))
