"""The CUDA engine: the same steps as kernels.run_epochs, as torch operations on the GPU.

Correct first: one step is a handful of kernel launches (a fused kernel is a later issue).
The batch order comes from the CPU engine's shuffle, so a seed gives the same batches on
every device. Runs on any torch device, which is how CPU-only machines test it.
"""

import numpy as np
import torch

from model import kernels
from model.training import Run


class CudaEngine:
    def __init__(self, run: Run, device: str) -> None:
        self.run = run
        self.device = torch.device(device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.device_name = str(self.device)

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        self.x, self.y, self.xv, self.yv = put(run.x), put(run.y), put(run.xv), put(run.yv)
        self.xs, self.ys = self.x, self.y
        self.theta = put(run.theta)
        self.lr = torch.tensor(run.config.learning_rate, dtype=self.x.dtype)

    def _gradient(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Gradient of the batch MSE (model.md), [7] in parameter order."""
        t = self.theta
        w1, b1, w2 = t[0:2], t[2:4], t[4:6]  # [2] each
        u = torch.sigmoid(xb[:, None] * w1 + b1)  # [B, 2]
        g = (2.0 / xb.shape[0]) * (u @ w2 + t[6] - yb)  # [B], dMSE/dyhat
        d = g[:, None] * w2 * (u * (1 - u))  # [B, 2], dMSE/dz
        return torch.cat([d.T @ xb, d.sum(0), u.T @ g, g.sum()[None]])

    def _mse(self, x: torch.Tensor, y: torch.Tensor) -> float:
        t = self.theta
        u = torch.sigmoid(x[:, None] * t[0:2] + t[2:4])
        return float(((u @ t[4:6] + t[6] - y).double() ** 2).mean())

    def run_epochs(self, sample_budget: int) -> int:
        """kernels.run_epochs, step for step."""
        run, c, state = self.run, self.run.config, self.run.state
        n = self.x.shape[0]
        stop = n - n % c.batch_size if c.drop_last else n
        done = 0
        status = kernels.RUNNING
        while int(state[kernels.EPOCH]) < c.epochs:
            offset = int(state[kernels.OFFSET])
            if offset == 0 and c.shuffle:
                # The CPU engine's own shuffle, uploaded: the same batch order on every device.
                kernels.shuffle(run.xs, run.ys, run.rng)
                self.xs, self.ys = torch.from_numpy(run.xs).to(self.device), torch.from_numpy(run.ys).to(self.device)
            batches = max(1, (sample_budget - done) // c.batch_size)
            end = min(stop, offset + batches * c.batch_size)
            for s in range(offset, end, c.batch_size):
                e = min(s + c.batch_size, end)
                self.theta -= self.lr * self._gradient(self.xs[s:e], self.ys[s:e])
            done += end - offset
            if end < stop:
                state[kernels.OFFSET] = end
                break
            epoch = int(state[kernels.EPOCH])
            loss = self._mse(self.x, self.y)
            val_loss = self._mse(self.xv, self.yv) if self.xv.shape[0] else 0.0
            theta = self.theta.cpu().numpy()
            if not (np.isfinite(loss) and np.isfinite(val_loss) and np.isfinite(theta).all()):
                self.theta = torch.from_numpy(run.last_good).to(self.device)
                status = kernels.DIVERGED
                break
            run.last_good[:] = theta
            run.losses[epoch], run.val_losses[epoch] = loss, val_loss
            state[kernels.EPOCH], state[kernels.OFFSET] = epoch + 1, 0
            done += n + self.xv.shape[0]
            watched = val_loss if self.xv.shape[0] else loss
            if kernels.early_stopping_update(state, watched, run.patience, run.min_delta):
                status = kernels.STOPPED_EARLY
                break
            if done >= sample_budget:
                break
        run.theta[:] = self.theta.cpu().numpy()
        if status == kernels.RUNNING and int(state[kernels.EPOCH]) >= c.epochs:
            status = kernels.COMPLETED
        return status
