"""Training batch order of the shared path: length grouping with a seeded order, and batches built by
token budget (``batch_tokens``) instead of a sentence count.

Both draw each epoch's order from a generator seeded with ``seed + epoch`` (the Trainer calls
``set_epoch``), never from the global RNG: a resumed epoch replays the batches of the interrupted one.
"""

from __future__ import annotations

import math
from typing import Any


def feature_lengths(dataset: Any) -> list[int]:
    """Tokens per feature of an encoded split: its ``length`` column where the task wrote one."""
    return list(dataset["length"] if "length" in dataset.column_names else [len(x) for x in dataset["input_ids"]])


def seeded_length_grouped_sampler(lengths: list[int], batch_size: int, seed: int) -> Any:
    """transformers' length grouping with an order that is a function of `seed` and the epoch only.

    transformers' `LengthGroupedSampler` draws its permutation from the global RNG, which the Trainer
    restores at resume and then draws again, so a resumed epoch saw another batch order. Here every
    epoch's order comes from a generator seeded with ``seed + epoch`` (the Trainer calls ``set_epoch``).
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class SeededLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self) -> None:
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self) -> Any:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))

    return SeededLengthGroupedSampler()


def token_budget_batches(lengths: list[int], max_tokens: int, generator: Any) -> list[list[int]]:
    """Indices of `lengths` cut into batches of at most `max_tokens` padded tokens, in a random order.

    Examples are sorted by length, ties in a random order, and packed greedily: a batch takes the next
    example while ``(examples + 1) * longest <= max_tokens``. The batch boundaries depend on the sorted
    lengths only, so every epoch has the same number of batches (the Trainer's schedule needs it),
    while which examples share a batch and the batch order change with `generator`. An example longer
    than `max_tokens` gets a batch of its own.
    """
    import torch

    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    order = sorted(shuffled, key=lengths.__getitem__)  # stable: equal lengths stay shuffled
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


def token_budget_sampler(lengths: list[int], max_tokens: int, seed: int, rank: int = 0, world_size: int = 1) -> Any:
    """Batch sampler over `token_budget_batches`, seeded by ``seed + epoch`` and rank-aware.

    Every rank builds the same batches and takes every `world_size`-th one from its `rank`; when the
    count is not a multiple of `world_size`, the first batches are repeated to even it out (as
    ``DistributedSampler`` pads). It subclasses transformers' `BatchRebalanceSampler`, the Trainer's
    one kind of rank-aware *batch* sampler: the Trainer then hands it to the DataLoader as
    ``batch_sampler`` and does not shard it a second time.
    """
    import torch
    from transformers.trainer_pt_utils import BatchRebalanceSampler

    class TokenBudgetSampler(BatchRebalanceSampler):
        def __init__(self) -> None:  # BatchRebalanceSampler's own set-up (samples per step) does not apply
            self.lengths, self.max_tokens, self.seed, self.epoch = list(lengths), max_tokens, seed, 0
            self.rank, self.world_size = rank, world_size
            self.batches = len(token_budget_batches(self.lengths, max_tokens, torch.Generator().manual_seed(seed)))

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __len__(self) -> int:
            return math.ceil(self.batches / self.world_size)

        def __iter__(self) -> Any:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            batches = token_budget_batches(self.lengths, self.max_tokens, g)
            batches += batches[: len(self) * self.world_size - len(batches)]
            return iter(batches[self.rank::self.world_size])

    return TokenBudgetSampler()
