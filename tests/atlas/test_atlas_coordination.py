"""The ranks of a distributed atlas job: rank 0 decides, every rank learns the decision or its error."""

import multiprocessing

import pytest

from circuits_vision.atlas.coordination import Ranks


def test_one_process_is_rank_0_of_1_and_decides_alone():
    ranks = Ranks.current()
    assert (ranks.dist, ranks.rank, ranks.world, ranks.leader) == (None, 0, 1, True)
    assert ranks.decided_by_leader(lambda: [(0, ["a"])]) == [(0, ["a"])]
    assert ranks.total(5) == 5 and ranks.share([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(KeyError, match="settings"):
        ranks.decided_by_leader(lambda: {}["settings"])


def _rank(rank: int, init: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        ranks = Ranks.current()
        decided = ranks.decided_by_leader(lambda: f"decided by rank {ranks.rank}")
        share = ranks.share(list(range(5)))
        total = ranks.total(len(share))
        try:
            ranks.decided_by_leader(lambda: 1 / 0 if ranks.leader else "never run on rank 1")
            failure = None
        except ZeroDivisionError as error:
            failure = str(error)
        results.put((rank, decided, share, total, failure))
    finally:
        dist.destroy_process_group()


def test_two_ranks_get_rank_0s_decision_and_its_error(tmp_path):
    pytest.importorskip("torch.distributed")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    init = (tmp_path / "rendezvous").as_uri()
    processes = [context.Process(target=_rank, args=(rank, init, results)) for rank in (0, 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0]  # neither waited forever for the failed decision
    got = sorted(results.get(timeout=5) for _ in processes)
    assert got == [
        (0, "decided by rank 0", [0, 2, 4], 5, "division by zero"),
        (1, "decided by rank 0", [1, 3], 5, "division by zero"),
    ]
