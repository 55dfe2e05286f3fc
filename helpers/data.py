"""Data sets that need no download: the bundled 8x8 digits and two interleaved spirals."""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from helpers._checks import check_int, check_real

__all__ = ["Split", "digits", "two_spirals", "adding_problem", "copy_task", "is_xy", "shuffled_batches",
           "ordered_batches", "check_data"]


@dataclass(frozen=True)
class Split:
    """A train/test split of features ``X_*`` and integer class labels ``y_*``."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X_test, self.y_test

    @property
    def num_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def to(self, device) -> Split:
        """Return the same split with every tensor on ``device``."""
        return Split(*(t.to(device) for t in (self.X_train, self.y_train, self.X_test, self.y_test)))


def digits(
    test_fraction: float = 0.25,
    seed: int = 0,
    n_train: int | None = None,
    device=None,
) -> Split:
    r"""scikit-learn's bundled 8x8 handwritten digits, split once and standardised.

    1797 images of 64 pixels (values 0..16) in 10 classes. The split is stratified and
    made once from ``seed`` (never again per epoch). Each pixel is standardised with the
    *training* mean and standard deviation,
    :math:`x' = (x - \mu_{train}) / \sigma_{train}`; pixels that are constant in the
    training set (:math:`\sigma = 0`) are only centred.

    Importing scikit-learn takes over a second, in every kernel that calls this. So the images
    and the split scikit-learn makes are kept in a cache file (one per scikit-learn version,
    ``test_fraction`` and ``seed``) in ``$COURSE_CACHE``, else ``$XDG_CACHE_HOME/gradient-flow``,
    else ``~/.cache/gradient-flow``; later calls read it without importing scikit-learn and
    return the same numbers. ``COURSE_CACHE=off`` switches the cache off; a file that cannot be
    read, or holds anything but a split of the digits, is made again, and one that cannot be
    written is skipped.

    Args:
        test_fraction: share of images held out, in (0, 1).
        seed: seed of the split.
        n_train: keep only the first ``n_train`` training images (a small-data regime);
            ``None`` keeps them all.
        device: where the tensors go (default: the CPU).

    Raises:
        ValueError: an argument out of range, a ``device`` torch does not know, or ``COURSE_CACHE``
            neither ``off`` nor an absolute folder.

    Returns:
        :class:`Split` with float32 features of shape (n, 64) and int64 labels.

    Example:
        >>> data = digits()
        >>> data.X_train.shape, data.num_classes
        (torch.Size([1347, 64]), 10)
    """
    check_real("test_fraction", test_fraction, minimum=0.0, maximum=1.0,
               strict_minimum=True, strict_maximum=True)
    check_int("seed", seed, minimum=0)
    if n_train is not None:
        check_int("n_train", n_train, minimum=1)
    if device is not None:                       # a bad name fails here, before the cache is touched
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device (e.g. 'cpu', 'cuda:0'), got {device!r}") from None
    X, y, train, test = _digits_and_split(test_fraction, seed)
    X_train, X_test, y_train, y_test = X[train], X[test], y[train], y[test]
    if n_train is not None:
        if n_train > len(X_train):
            raise ValueError(f"n_train must be <= {len(X_train)} for this split, got {n_train}")
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    tensors = [
        torch.as_tensor((X_train - mean) / std, dtype=torch.float32),
        torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor((X_test - mean) / std, dtype=torch.float32),
        torch.as_tensor(y_test, dtype=torch.int64),
    ]
    split = Split(*tensors)
    return split if device is None else split.to(device)


def _cache_dir() -> Path | None:
    """Where :func:`digits` keeps its cache file, or ``None`` when ``COURSE_CACHE=off`` or no home is known."""
    chosen = os.environ.get("COURSE_CACHE", "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        folder = Path(chosen).expanduser()
        if not folder.is_absolute():     # relative to each kernel's own folder: a cache per folder, in the repo
            raise ValueError(f"COURSE_CACHE must be an absolute folder or 'off', got {chosen!r}")
        return folder
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "gradient-flow"
    home = Path(os.path.expanduser("~"))
    return home / ".cache" / "gradient-flow" if home.is_absolute() else None


def _digits_and_split(test_fraction: float, seed: int):
    """The digits (X float64, y int64) and scikit-learn's stratified split of them (train, test indices)."""
    folder = _cache_dir()
    path = None if folder is None else folder / (
        f"digits-sklearn-{metadata.version('scikit-learn')}-test-{float(test_fraction)!r}-seed-{seed}.npz")
    kept = None if path is None else _read_split(path)
    if kept is not None:
        return kept
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    # the indices depend on len(y), y and the seed only, so splitting 0..n-1 gives the split of X
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    if path is not None:
        _save_atomically(path, X=X, y=y, train=train, test=test)
    return X, y, train, test


def _read_split(path: Path):
    """``(X, y, train, test)`` from a cache file, or ``None`` if it is absent, damaged or not one of ours."""
    try:
        with np.load(path) as kept:
            X, y, train, test = (kept[k] for k in ("X", "y", "train", "test"))
        n = len(y)
        integers = all(np.issubdtype(a.dtype, np.integer) and a.ndim == 1 for a in (y, train, test))
        ours = (integers and X.dtype == np.float64 and X.shape == (n, 64) and len(test) > 0
                and np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n)))
    except Exception:                    # absent, truncated, not an .npz, bad compressed data …: made again
        return None
    return (X, y, train, test) if ours else None


def _save_atomically(path: Path, **arrays) -> None:
    """Write an .npz under a temporary name, then rename it: a reader sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "xb") as f:             # the umask's permissions, as for any file the user writes
            np.savez_compressed(f, **arrays)
        os.replace(temporary, path)
    except OSError:
        pass                                         # a read-only or full disk: no cache, same numbers
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)        # left only if the rename did not happen


def two_spirals(n: int, noise: float = 0.0, seed: int = 0, turns: float = 1.5):
    r"""Two interleaved spirals in the plane, a small problem no linear model can solve.

    Point :math:`i` of class :math:`c \in \{0, 1\}` sits at angle
    :math:`\theta = 2\pi \cdot \text{turns} \cdot t` and radius :math:`r = t` with
    :math:`t \sim U(0.05, 1)`, rotated by :math:`\pi c`, plus Gaussian noise of standard
    deviation ``noise``.

    Args:
        n: number of points in all (classes alternate, so they differ by at most one).
        noise: standard deviation of the added noise, >= 0.
        seed: seed of a private generator (the global RNG is untouched).
        turns: how many turns each spiral makes.

    Returns:
        ``(X, y)``: float32 tensor of shape (n, 2) and int64 labels of shape (n,).

    Example:
        >>> X, y = two_spirals(200, noise=0.05)
        >>> X.shape, int(y.sum())
        (torch.Size([200, 2]), 100)
    """
    check_int("n", n, minimum=1)
    check_real("noise", noise, minimum=0.0)
    check_int("seed", seed, minimum=0)
    check_real("turns", turns, minimum=0.0, strict_minimum=True)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = 0.05 + 0.95 * torch.rand(n, generator=g)
    theta = 2 * math.pi * turns * t + math.pi * y
    X = torch.stack([t * torch.cos(theta), t * torch.sin(theta)], dim=1)
    X = X + noise * torch.randn(n, 2, generator=g)
    return X.float(), y.long()


def adding_problem(n: int, seq_len: int, seed: int = 0, device=None):
    r"""The adding problem of Hochreiter & Schmidhuber (1997): add two marked numbers.

    Each sequence has ``seq_len`` steps of two features: channel 0 holds
    :math:`u_t \sim \mathcal U(0, 1)`, channel 1 is a marker that is 1 at exactly two steps,
    one drawn uniformly from the first half (:math:`t < \lfloor T/2 \rfloor`) and one from
    the second, and 0 elsewhere. The target is the sum of the two marked values,

    .. math:: y = u_a + u_b, \qquad \mathbb E[y] = 1, \qquad \mathrm{Var}[y] = \tfrac{2}{12} = \tfrac16,

    so a model that ignores the input and predicts the mean, 1, has mean squared error
    :math:`\approx 1/6 \approx 0.167`. Beating it means carrying :math:`u_a` across up to
    :math:`T - 1` steps: a test of long-range gradient flow.

    Args:
        n: number of sequences, >= 1.
        seq_len: number of time steps :math:`T`, >= 2.
        seed: seed of a private generator (the global RNG is untouched).
        device: where the tensors go (default: the CPU).

    Returns:
        ``(X, y)``: float32 tensors of shapes (n, seq_len, 2) and (n, 1).

    Example:
        >>> X, y = adding_problem(4, 10)
        >>> X.shape, y.shape, X[:, :, 1].sum(dim=1).tolist()
        (torch.Size([4, 10, 2]), torch.Size([4, 1]), [2.0, 2.0, 2.0, 2.0])
    """
    check_int("n", n, minimum=1)
    check_int("seq_len", seq_len, minimum=2)
    check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, seq_len, generator=g)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, seq_len, (n,), generator=g)
    markers = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    X = torch.stack([values, markers], dim=2)
    y = (values[rows, first] + values[rows, second]).unsqueeze(1)
    if device is not None:
        X, y = X.to(device), y.to(device)
    return X, y


def copy_task(n: int, length: int = 6, vocab: int = 10, seed: int = 0, device=None):
    r"""A next-token task with a known answer: read ``length`` random symbols, then write them again.

    Each sequence is :math:`a_1 \dots a_k \;\texttt{SEP}\; a_1 \dots a_k` with :math:`k` = ``length``,
    symbols :math:`a_i` drawn uniformly from :math:`\{0, \dots, V-1\}` (:math:`V` = ``vocab``) and the
    separator token :math:`V`. A causal language model reads the first :math:`2k` tokens (``X``) and
    predicts each next one (``y``, ``X`` shifted by one). The first half is random, so those
    targets are set to ``-100`` (no loss); the separator and the copy are fully determined by the
    prefix, so

    .. math:: \min L = 0, \qquad L_{\text{chance}} = \log(V + 1) \ \text{(uniform guess)}, \qquad
              L_{\text{no copy}} = \tfrac{k}{k+1}\log V \ \text{(knows only where SEP goes)}.

    Copying :math:`a_i` from :math:`k+1` positions back needs attention: a model that has not
    learned to attend stays at the "no copy" loss.

    Args:
        n: number of sequences, >= 1.
        length: :math:`k`, symbols to copy, >= 1.
        vocab: :math:`V`, distinct symbols, >= 2 (the model needs ``vocab + 1`` tokens).
        seed: seed of a private generator (the global RNG is untouched).
        device: where the tensors go (default: the CPU).

    Returns:
        ``(X, y)``: int64 tensors of shape (n, 2k); ``y[:, :k-1]`` is ``-100``, ``y[:, k-1]`` is SEP,
        ``y[:, k:]`` the copy.

    Example:
        >>> X, y = copy_task(1, length=3, vocab=5)
        >>> X[0, :3].tolist() == y[0, 3:].tolist(), X[0, 3].item(), y[0, :3].tolist()[:2]
        (True, 5, [-100, -100])
    """
    check_int("n", n, minimum=1)
    check_int("length", length, minimum=1)
    check_int("vocab", vocab, minimum=2)
    check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(0, vocab, (n, length), generator=g)
    sep = torch.full((n, 1), vocab, dtype=torch.long)
    sequence = torch.cat([symbols, sep, symbols], dim=1)
    X, y = sequence[:, :-1].clone(), sequence[:, 1:].clone()
    y[:, :length - 1] = -100
    if device is not None:
        X, y = X.to(device), y.to(device)
    return X, y


# -- batching shared by training, the LR finder and ensembles (layer 0: no import upward) --


def is_xy(data) -> bool:
    """Whether ``data`` is an ``(X, y)`` pair of tensors (else it is taken for an iterable of batches).

    Args:
        data: anything :func:`helpers.training.fit` accepts as ``train_data``.

    Example:
        >>> is_xy((torch.zeros(4, 2), torch.zeros(4))), is_xy([(torch.zeros(4, 2), torch.zeros(4))])
        (True, False)
    """
    return isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def shuffled_batches(data, batch_size: int, generator: torch.Generator) -> Iterable:
    """Shuffled mini-batches of an ``(X, y)`` pair: a new order from ``generator`` each call.

    The order is one ``torch.randperm(len(X), generator=generator)``; the last batch
    holds the remainder (it is not dropped).

    Args:
        data: an ``(X, y)`` pair of tensors with ``len(X) == len(y)``.
        batch_size: examples per batch (>= 1).
        generator: the ``torch.Generator`` that draws the order.

    Example:
        >>> X, y = torch.arange(5.0), torch.arange(5)
        >>> [len(xb) for xb, yb in shuffled_batches((X, y), 2, torch.Generator().manual_seed(0))]
        [2, 2, 1]
    """
    _check_batching(data, batch_size)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__} ({generator!r})")
    return _shuffled(data, batch_size, generator)


def _shuffled(data, batch_size: int, generator: torch.Generator) -> Iterable:
    X, y = data
    order = torch.randperm(len(X), generator=generator)  # drawn at the first batch, as before the checks
    for start in range(0, len(X), batch_size):
        index = order[start:start + batch_size]
        yield X[index], y[index]


def ordered_batches(data, batch_size: int) -> Iterable:
    """Mini-batches of an ``(X, y)`` pair in their stored order (for evaluation).

    Args:
        data: an ``(X, y)`` pair of tensors with ``len(X) == len(y)``.
        batch_size: examples per batch (>= 1); the last batch holds the remainder.

    Example:
        >>> [yb.tolist() for xb, yb in ordered_batches((torch.zeros(3, 1), torch.arange(3)), 2)]
        [[0, 1], [2]]
    """
    _check_batching(data, batch_size)
    return _ordered(data, batch_size)


def _ordered(data, batch_size: int) -> Iterable:
    X, y = data
    for start in range(0, len(X), batch_size):
        yield X[start:start + batch_size], y[start:start + batch_size]


def _check_batching(data, batch_size: int) -> None:
    """Raise, at the call rather than at the first batch, unless ``data`` is an (X, y) pair and ``batch_size`` >= 1."""
    if not is_xy(data):
        raise TypeError(f"data must be an (X, y) pair of tensors, got {type(data).__name__}")
    check_data("data", data, required=True)
    check_int("batch_size", batch_size, minimum=1)


def check_data(name: str, data, required: bool) -> None:
    """Raise unless ``data`` is an ``(X, y)`` pair of tensors of equal, non-zero length, or an iterable of batches.

    Args:
        name: the argument's name, used in the message (``"train_data"``).
        data: the value to check.
        required: whether ``None`` is refused (else ``None`` passes).

    Raises:
        TypeError: ``data`` is neither form (or is ``None`` while ``required``); a dict or a
            string is refused too (iterating one gives keys or characters, not batches).
        ValueError: ``X`` and ``y`` differ in length, or are empty; or ``data`` is an empty list.

    Example:
        >>> check_data("train_data", (torch.zeros(3, 2), torch.zeros(2)), required=True)
        Traceback (most recent call last):
        ...
        ValueError: train_data: X and y must have the same length, got 3 and 2
    """
    if data is None:
        if required:
            raise TypeError(f"{name} must be a (X, y) tuple of tensors or an iterable of (x, y) batches, got None")
        return
    if isinstance(data, Mapping | str | bytes):
        gives = "keys" if isinstance(data, Mapping) else "characters"
        raise TypeError(f"{name} must be a (X, y) tuple of tensors or an iterable of (x, y) batches, got "
                        f"{type(data).__name__} (iterating it gives its {gives}, not batches)")
    if isinstance(data, tuple | list) and not data:
        raise ValueError(f"{name} is empty: an empty {type(data).__name__} holds no (x, y) batch")
    if isinstance(data, tuple | list) and not is_xy(data):
        if all(isinstance(b, tuple | list) and len(b) == 2 for b in data):
            return  # a list of (x, y) batches
        raise TypeError(f"{name} as a tuple must be (X, y), two tensors, or a list of (x, y) batches; got "
                        f"{len(data)} items of types {[type(t).__name__ for t in data]}")
    if is_xy(data):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"{name}: X and y must have the same length, got {len(data[0])} and {len(data[1])}")
        if len(data[0]) == 0:
            raise ValueError(f"{name} is empty")
    elif not isinstance(data, Iterable):
        raise TypeError(f"{name} must be a (X, y) tuple of tensors or an iterable of batches, "
                        f"got {type(data).__name__}")
