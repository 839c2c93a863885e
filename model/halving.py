"""Successive halving (and Hyperband's brackets): which trials of a fleet go on at each rung.

A bracket's rungs are min_epochs * reduction_factor**(bracket + k) epochs, below the full
epochs, then the full epochs. At each rung, of the trials that reached it, the best
1 / reduction_factor by the objective measured at that epoch (at least one) go on; the others
end there, pruned. Ties break by trial index, so the choice depends on the trials alone.

Survivors continue from where they stand rather than retraining from epoch 0: a fleet's
arrays hold all of a trial's state (parameters, early-stopping memory, epoch) and the batch
order of an epoch depends only on the seed and the epoch (order.py), so a trial that stops at
a rung and is resumed runs exactly the epochs one uninterrupted run would (the driver already
calls the engine a slice of epochs at a time).
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Halving:
    min_epochs: int
    reduction_factor: int
    bracket: int = 0  # its first rung is min_epochs * reduction_factor**bracket
    validation: bool = True  # rank by the validation loss (else the training loss)

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which trials are ranked, and last the full epochs."""
        out, rung = [], self.min_epochs * self.reduction_factor**self.bracket
        while rung < epochs:
            out.append(rung)
            rung *= self.reduction_factor
        return [*out, epochs]

    def kept(self, reached: int) -> int:
        return max(1, reached // self.reduction_factor)

    def planned_epochs(self, trials: int, epochs: int) -> int:
        """The model-epochs of a bracket of trials when none ends before its rung."""
        total, previous, alive = 0, 0, trials
        for rung in self.rungs(epochs):
            total += alive * (rung - previous)
            previous, alive = rung, self.kept(alive)
        return total

    def survivors(self, objective: npt.NDArray[np.float64], reached: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Of the trials reached (indices, ascending), those that go on: the smallest objectives."""
        ranked = reached[np.lexsort((reached, objective[reached]))]
        return np.sort(ranked[: self.kept(len(reached))])


def bracket_sizes(trials: int, brackets: int, reduction_factor: int) -> list[int]:
    """How many of the trials each bracket gets, as Hyperband deals them: bracket b (first rung
    min_epochs * factor**b) weighs factor**(B-1-b) / (B-b), so every bracket costs about the
    same; shares rounded by largest remainder (ties to the lower bracket)."""
    weights = np.array([reduction_factor ** (brackets - 1 - b) / (brackets - b) for b in range(brackets)])
    shares = trials * weights / weights.sum()
    sizes = np.floor(shares).astype(np.int64)
    order = np.lexsort((np.arange(brackets), -(shares - sizes)))
    sizes[order[: trials - int(sizes.sum())]] += 1
    return [int(s) for s in sizes]
