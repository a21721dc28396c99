"""Hierarchical temporal aggregation: the plan and the shared rollout."""

import pytest
import torch

from geoformer.aggregation import UnreachableLeadTime, aggregated_rollout, plan, plans

PANGU = (1, 3, 6, 24)


def _greedy(lead, available):
    steps, left = [], lead
    for s in sorted(available, reverse=True):
        while left >= s:
            steps.append(s)
            left -= s
    return steps if left == 0 else None


@pytest.mark.parametrize("lead,expected", [
    (56, [24, 24, 6, 1, 1]),
    (168, [24] * 7),
    (1, [1]),
    (9, [6, 3]),
    (23, [6, 6, 6, 3, 1, 1]),
])
def test_released_models_follow_the_papers_greedy_plan(lead, expected):
    assert plan(lead, PANGU) == expected


def test_plan_is_the_fewest_steps_and_equals_greedy_for_the_released_set():
    for lead in range(1, 24 * 10 + 1):
        p = plan(lead, PANGU)
        assert sum(p) == lead and p == _greedy(lead, PANGU)


def test_plan_beats_greedy_where_greedy_fails():
    assert _greedy(36, (18, 24)) is None
    assert plan(36, (18, 24)) == [18, 18]
    assert plan(48, (18, 24)) == [24, 24]
    assert len(plan(54, (6, 24, 27))) == 2  # 27 + 27, where greedy takes 24 + 24 + 6


def test_unreachable_lead_times_are_clear_errors():
    with pytest.raises(UnreachableLeadTime, match=r"5 h cannot be reached with models of \[6"):
        plan(5, (6, 24))
    with pytest.raises(ValueError, match="positive"):
        plan(0, PANGU)
    with pytest.raises(UnreachableLeadTime):
        plans([6, 12, 13], (6, 24))


class _Counter:
    """A fake one-step model that adds its lead time: the state is the hours elapsed."""

    def __init__(self, hours):
        self.hours, self.calls = hours, 0

    def __call__(self, upper, surface):
        self.calls += 1
        return upper + self.hours, surface + self.hours


def test_rollout_reaches_every_lead_and_shares_intermediate_states():
    models = {24: _Counter(24), 6: _Counter(6)}
    leads = list(range(6, 241, 6))
    zero = torch.zeros(1)
    got = dict(aggregated_rollout(models, zero, zero, leads))
    assert sorted(got) == leads
    for lead, (u, s) in got.items():
        assert u.item() == lead and s.item() == lead
    calls = models[24].calls + models[6].calls
    prefixes = {tuple(p[:i]) for p in plans(leads, models).values()
                for i in range(1, len(p) + 1)}
    assert calls == len(prefixes)  # each distinct prefix computed once
    assert models[24].calls == 10  # the 24 h backbone
    assert calls < sum(len(p) for p in plans(leads, models).values())


def test_rollout_checks_reachability_before_any_model_call():
    models = {24: _Counter(24)}
    with pytest.raises(UnreachableLeadTime):
        list(aggregated_rollout(models, torch.zeros(1), torch.zeros(1), [24, 30]))
    assert models[24].calls == 0
