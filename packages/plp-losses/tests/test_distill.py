"""Distillation losses against brute-force definitions."""

import pytest
import torch

from plp_losses import DISTILLATION, EmbeddingMSELoss, PlpLossesError, RelationalDistillationLoss


def test_embedding_mse_is_the_mean_squared_error_after_the_projection():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 4, requires_grad=True), torch.randn(6, 3)
    loss = EmbeddingMSELoss(student_size=4, teacher_size=3)
    projection = loss.projection
    assert isinstance(projection, torch.nn.Linear)
    projected = student @ projection.weight.T + projection.bias
    expected = sum(((projected[i] - teacher[i]) ** 2).sum() for i in range(6)) / (6 * 3)
    torch.testing.assert_close(loss(student, teacher), expected)
    same = EmbeddingMSELoss(student_size=3, teacher_size=3)
    assert isinstance(same.projection, torch.nn.Identity)
    assert not list(same.parameters())


def rkd_reference(student, teacher):
    """The RKD authors' distance loss, entry by entry."""
    n = len(student)

    def normalised(x):
        d = [[torch.linalg.vector_norm(x[i] - x[j]) for j in range(n)] for i in range(n)]
        flat = [d[i][j] for i in range(n) for j in range(n) if i != j]
        mean = sum(flat) / len(flat)
        return [[d[i][j] / mean for j in range(n)] for i in range(n)]

    s, t = normalised(student), normalised(teacher.detach())
    total = 0.0
    for i in range(n):
        for j in range(n):
            diff = (s[i][j] - t[i][j]).abs()
            total = total + (0.5 * diff**2 if diff < 1 else diff - 0.5)
    return total / (n * n)


def test_relational_loss_matches_the_rkd_distance_term():
    torch.manual_seed(1)
    student = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(7, 9, dtype=torch.float64) * 3
    value = RelationalDistillationLoss()(student, teacher)
    expected = rkd_reference(student, teacher)
    (g_value,) = torch.autograd.grad(value, student)
    (g_expected,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(g_value, g_expected)
    # Invariant to the scale of either side: only the structure is matched.
    torch.testing.assert_close(RelationalDistillationLoss()(student * 5, teacher / 2), value)


def test_registry_builds_both_with_the_sizes_filled_in():
    assert DISTILLATION.available() == ["embedding_mse", "relational"]
    for name in DISTILLATION.available():
        loss = DISTILLATION.build(name, student_size=4, teacher_size=8)
        assert torch.isfinite(loss(torch.randn(5, 4), torch.randn(5, 8)))
    assert "student_size" not in DISTILLATION.parameters("embedding_mse")[0]


def test_mismatched_batches_are_refused():
    with pytest.raises(PlpLossesError, match="5 student but 4 teacher embeddings"):
        RelationalDistillationLoss()(torch.randn(5, 3), torch.randn(4, 3))
    with pytest.raises(PlpLossesError, match="teacher embeddings have 2 dimensions, expected 3"):
        EmbeddingMSELoss(4, 3)(torch.randn(5, 4), torch.randn(5, 2))
    with pytest.raises(PlpLossesError, match="student embeddings have NaN"):
        RelationalDistillationLoss()(torch.full((2, 2), float("nan")), torch.randn(2, 3))
