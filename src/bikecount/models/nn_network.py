"""The ``nn`` model's network, its hyperparameters and its training loop (PyTorch, no sklearn).

:class:`Network` adds up a counter part and a season part (see :mod:`bikecount.models.neural`
for why); :func:`train_network` trains a fresh seeded one, with early stopping on validation
rows when given them; :func:`predict_scaled` runs it in batches.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from bikecount.models.nn_inputs import COUNTER_INPUTS, NUMERIC_INPUTS, SEASON_INPUTS
from bikecount.models.param_types import PARAMS_CONFIG, Bool, Float, Int

logger = logging.getLogger(__name__)

PREDICT_BATCH_ROWS = 65_536
# One thread: these small matrices gain little from two, and the cores are shared with other
# work, where waiting threads slow everyone down. It also keeps results identical across hosts.
N_THREADS = 1

Sizes = tuple[Annotated[Int, Field(ge=1, le=4096)], ...]
# Embedding codes, standardised numeric inputs and the standardised target of some rows.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class NNParams(BaseModel):
    """Hyperparameters of the ``nn`` model; the defaults fit the Paris data in about a minute."""

    model_config = PARAMS_CONFIG

    embedding_dim: Int = Field(default=16, ge=1, le=256)
    hidden_sizes: Sizes = Field(default=(128, 64), min_length=1, max_length=6)
    # The season part is kept small: a smooth season persists better than a detailed one.
    season_hidden_sizes: Sizes = Field(default=(32, 16), min_length=1, max_length=6)
    dropout: Float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: Float = Field(default=5e-3, gt=0.0, le=1.0)
    weight_decay: Float = Field(default=1e-5, ge=0.0, le=1.0)
    batch_size: Int = Field(default=512, ge=8, le=262_144)
    max_epochs: Int = Field(default=40, ge=1, le=1000)
    patience: Int = Field(default=5, ge=1, le=100)
    validation_fraction: Float = Field(default=0.1, gt=0.0, le=0.5)
    refit: Bool = True
    # Train for exactly this many epochs on every row, with no early stopping: the refit of a
    # registered model, after its evaluation fit chose the epoch count.
    epochs: Int | None = Field(default=None, ge=1, le=1000)


def _mlp(width: int, hidden_sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Dense ReLU layers with dropout, then one linear output."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class Network(nn.Module):
    """Counter part plus season part, each an MLP over embeddings and numeric inputs."""

    def __init__(self, n_codes: int, params: NNParams) -> None:
        super().__init__()
        dim = params.embedding_dim
        self.counter_embedding = nn.Embedding(n_codes, dim)
        self.hour_embedding = nn.Embedding(24, dim)
        self.weekday_embedding = nn.Embedding(7, dim)
        self.counter_columns = [NUMERIC_INPUTS.index(name) for name in COUNTER_INPUTS]
        self.season_columns = [NUMERIC_INPUTS.index(name) for name in SEASON_INPUTS]
        width = 3 * dim + len(COUNTER_INPUTS)
        self.counter_mlp = _mlp(width, params.hidden_sizes, params.dropout)
        width = 2 * dim + len(SEASON_INPUTS)
        self.season_mlp = _mlp(width, params.season_hidden_sizes, params.dropout)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        hour = self.hour_embedding(codes[:, 1])
        weekday = self.weekday_embedding(codes[:, 2])
        counter = self.counter_embedding(codes[:, 0])
        place = torch.cat([counter, hour, weekday, numeric[:, self.counter_columns]], dim=1)
        season = torch.cat([hour, weekday, numeric[:, self.season_columns]], dim=1)
        return (self.counter_mlp(place) + self.season_mlp(season)).squeeze(1)


@contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Use at most ``n_threads`` intra-op threads inside the block, then restore the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n_threads, previous)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Run:
    """One training run: (train, validation) loss per epoch, and the best epoch if validated."""

    losses: list[tuple[float, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.nan
    best_state: dict = field(default_factory=dict)


def train_network(
    n_codes: int, params: NNParams, seed: int, train: Batch, valid: Batch | None, n_epochs: int
) -> tuple[Network, Run]:
    """Train a fresh seeded network for up to ``n_epochs`` epochs.

    The step size follows a cosine decay to zero over the ``n_epochs`` epochs' batches, so a
    refit for the epoch count that early stopping chose ends on settled weights. With ``valid``,
    training stops once ``patience`` epochs pass without a better validation loss, and the best
    epoch's weights are kept; without, the last ones.
    """
    torch.manual_seed(seed)
    module = Network(n_codes, params)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    n_batches = math.ceil(len(train[2]) / params.batch_size)
    steps = np.arange(n_epochs * n_batches) / (n_epochs * n_batches)
    rates = params.learning_rate * 0.5 * (1.0 + np.cos(np.pi * steps))
    run, started = Run(), time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        epoch_rates = rates[(epoch - 1) * n_batches : epoch * n_batches]
        train_loss = _run_epoch(module, optimizer, train, params.batch_size, generator, epoch_rates)
        valid_loss = math.nan if valid is None else _mean_squared_error(module, valid)
        run.losses.append((train_loss, valid_loss))
        logger.debug(
            "epoch %d: train loss %.4f, validation loss %.4f (scaled MSE, %.1f s)",
            *(epoch, train_loss, valid_loss, time.perf_counter() - started),
        )
        if valid is None:
            continue
        if epoch == 1 or valid_loss < run.best_loss:
            run.best_epoch, run.best_loss = epoch, valid_loss
            run.best_state = copy.deepcopy(module.state_dict())
        elif epoch - run.best_epoch >= params.patience:
            break
    if valid is not None:
        module.load_state_dict(run.best_state)
    return module, run


def _run_epoch(
    module: Network,
    optimizer: torch.optim.Optimizer,
    data: Batch,
    batch_size: int,
    generator: torch.Generator,
    rates: np.ndarray,
) -> float:
    """One pass over shuffled rows, one step size per batch; returns the mean loss (scaled)."""
    codes, numeric, target = data
    module.train()
    order = torch.randperm(len(target), generator=generator)
    total = 0.0
    for step, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start : start + batch_size]
        optimizer.param_groups[0]["lr"] = float(rates[step])
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(module(codes[batch], numeric[batch]), target[batch])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)


def _mean_squared_error(module: Network, data: Batch) -> float:
    return float(np.mean((predict_scaled(module, data[0], data[1]) - data[2].numpy()) ** 2))


def predict_scaled(module: Network, codes: torch.Tensor, numeric: torch.Tensor) -> np.ndarray:
    """Network outputs in eval mode, in batches so that memory stays flat."""
    module.eval()
    outputs = [np.empty(0, dtype=np.float32)]
    with torch.inference_mode():
        for start in range(0, len(codes), PREDICT_BATCH_ROWS):
            stop = start + PREDICT_BATCH_ROWS
            outputs.append(module(codes[start:stop], numeric[start:stop]).numpy())
    return np.concatenate(outputs).astype(np.float64)
