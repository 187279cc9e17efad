"""The verification sample (migrator/samples.py): which users it keeps, whatever order they come in."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.samples import Sampler, UserFacts

ids_st = st.lists(st.text(alphabet="abcé:@1", min_size=1, max_size=6), min_size=1, max_size=40, unique=True)


def facts(user_id: str) -> UserFacts:
    return UserFacts(user_id, False, False, False, False, None)


class CoarseSampler(Sampler):
    """A rank with only three values, so that most users tie and the user id must decide."""

    def rank(self, user_id: str) -> int:
        return len(user_id) % 3


def expected(sampler: Sampler, users: list[str]) -> set[str]:
    return set(sorted(users, key=lambda u: (sampler.rank(u), u))[: sampler.size])


@settings(max_examples=200, deadline=None)
@given(ids_st, st.randoms(use_true_random=False), st.integers(1, 10))
def test_the_sample_is_the_smallest_ranks_in_any_order_even_with_ties(users, rnd, size):
    for cls in (Sampler, CoarseSampler):
        shuffled = list(users)
        rnd.shuffle(shuffled)
        sampler = cls(size, seed=3)
        for u in shuffled:
            sampler.offer(u, lambda u=u: facts(u))
        sampler.freeze()
        assert set(sampler.users) == expected(sampler, users)
        assert all(f.username == u for u, f in sampler.users.items())


@settings(max_examples=100, deadline=None)
@given(ids_st, st.integers(1, 10), st.integers(2, 4))
def test_partial_samples_adopted_equal_the_single_pass_sample(users, size, parts):
    for cls in (Sampler, CoarseSampler):
        partial: dict[str, UserFacts] = {}
        for part in range(parts):
            worker = cls(size, seed=3)
            for i, u in enumerate(users):
                if i % parts == part:
                    worker.offer(u, lambda u=u: facts(u))
            worker.freeze()
            partial.update(worker.users)
        merged = cls(size, seed=3)
        merged.adopt(partial)
        assert set(merged.users) == expected(merged, users)


def test_the_seed_changes_the_sample_and_facts_are_made_only_for_kept_users():
    users = [f"@u{i}:example.org" for i in range(500)]
    made: list[str] = []
    samples = []
    for seed in (1, 2):
        sampler = Sampler(10, seed=seed)
        for u in users:
            sampler.offer(u, lambda u=u: (made.append(u), facts(u))[1])
        sampler.freeze()
        samples.append(set(sampler.users))
    assert samples[0] != samples[1] and all(len(s) == 10 for s in samples)
    assert len(made) < 200  # a heap of 10 over 500 users: far fewer than one UserFacts per user
