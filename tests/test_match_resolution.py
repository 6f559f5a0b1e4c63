"""The one resolution-matching rule AT, FT, FSP, NST, VID and CA-MKD share: both maps average-pooled
to the per-dimension smallest size, a map already that size left untouched."""
import torch

from kdsuite.methods.components.features import match_resolution


def test_non_square_maps_meet_at_the_smallest_size_in_each_dimension():
    s, t = torch.randn(2, 3, 8, 6), torch.randn(2, 5, 4, 12)
    a, b = match_resolution(s, t)
    assert a.shape == (2, 3, 4, 6) and b.shape == (2, 5, 4, 6)
    assert a.shape[-1] == s.shape[-1] and torch.allclose(a[1, 2, 3, 5], s[1, 2, 6:8, 5].mean())
    assert torch.allclose(b[0, 4, 2, 1], t[0, 4, 2, 2:4].mean())


def test_maps_of_one_size_are_returned_as_they_are():
    s, t = torch.randn(1, 2, 4, 4), torch.randn(1, 7, 4, 4)
    a, b = match_resolution(s, t)
    assert a is s and b is t
