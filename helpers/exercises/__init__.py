"""Automatic checkers for the learners' exercises, one module per notebook.

Each checker takes the learner's function, runs it on fresh inputs and compares it
with a reference computed independently (autograd, linear algebra or
:mod:`helpers.theory`). It prints one stable line and returns nothing (so a notebook
shows the line and no ``True``/``False`` after it):

* ``… not attempted yet …`` -- the function still raises ``NotImplementedError``;
* ``… correct.``
* ``… not yet. <hint>`` -- wrong, with a hint.

No checker moves the learner's global random state (each runs inside
:func:`torch.random.fork_rng`). Worked *solutions* live in :mod:`helpers.solutions`, not
in the notebooks: ``show_solution("3.1")`` prints one after its checker has checked an
attempt of yours (or at once with ``force=True``).

Notebook → module (exercise ``N.k`` is the k-th exercise of notebook ``N``; :data:`EXERCISES`
lists them all, in order):

====================================  ==============================================
notebook                              module (``helpers.exercises.…``)
====================================  ==============================================
01 gradient descent, backpropagation  :mod:`~.nb01_gradient_descent_backprop`
02 vanishing and exploding gradients  :mod:`~.nb02_vanishing_exploding`
03 weight initialization              :mod:`~.nb03_weight_initialization`
04 activation functions               :mod:`~.nb04_activation_functions`
05 normalization                      :mod:`~.nb05_normalization`
06 residual connections               :mod:`~.nb06_residual_connections`
07 gradient clipping                  :mod:`~.nb07_gradient_clipping`
08 regularization                     :mod:`~.nb08_regularization`
09 optimizers                         :mod:`~.nb09_optimizers`
10 learning-rate schedules            :mod:`~.nb10_lr_schedules`
11 recurrent networks                 :mod:`~.nb11_recurrent_networks`
12 mixed precision                    :mod:`~.nb12_mixed_precision`
13 capstone                           :mod:`~.nb13_capstone`
14 FAQ, errata, future directions     :mod:`~.nb14_faq_errata_future`
15 Transformers                       :mod:`~.nb15_transformers`
====================================  ==============================================

Notebook 00 reuses exercise 1.1. The registry, :data:`EXERCISES` (id → :class:`Exercise`:
number, title, checker), the ``@exercise`` decorator that fills it and the checks every
checker shares live in :mod:`helpers.exercises._core`. This package re-exports the public
names of every notebook module (its ``__all__``), so ``from helpers.exercises import
check_xavier_std`` works; nothing here lists the checkers again.

How to add an exercise, say 7.4 (four places; the tests name any you miss):

1. the checker, in its notebook's module (:mod:`~.nb07_gradient_clipping`): a function
   ``check_<name>`` decorated with ``@exercise("7.4", "<title>")``, appended to that
   module's ``__all__`` and written after 7.3 (the registry keeps notebook order; a
   duplicate or malformed id raises ``ValueError`` at import);
2. its worked solution in :mod:`helpers.solutions`: a function ``<name>`` (the checker's
   name without ``check_``) and a row ``("7.4", <name>, "<why>")`` after 7.3's in its table;
3. the notebook cell that asks for ``<name>`` (raising ``NotImplementedError``) and calls
   ``check_<name>(<name>)``;
4. its test case in ``tests/test_exercises.py``: an entry in notebook 07's table,
   ``CASES_07``, with the reference solution and the plausible wrong answers the checker
   must reject.
"""

from helpers.exercises import (
    nb01_gradient_descent_backprop,
    nb02_vanishing_exploding,
    nb03_weight_initialization,
    nb04_activation_functions,
    nb05_normalization,
    nb06_residual_connections,
    nb07_gradient_clipping,
    nb08_regularization,
    nb09_optimizers,
    nb10_lr_schedules,
    nb11_recurrent_networks,
    nb12_mixed_precision,
    nb13_capstone,
    nb14_faq_errata_future,
    nb15_transformers,
)
from helpers.exercises._core import EXERCISES, Exercise, attempted, show_solution

_NOTEBOOK_MODULES = (
    nb01_gradient_descent_backprop, nb02_vanishing_exploding, nb03_weight_initialization,
    nb04_activation_functions, nb05_normalization, nb06_residual_connections, nb07_gradient_clipping,
    nb08_regularization, nb09_optimizers, nb10_lr_schedules, nb11_recurrent_networks,
    nb12_mixed_precision, nb13_capstone, nb14_faq_errata_future, nb15_transformers,
)
"""The notebook modules in notebook order; their ``__all__`` is what this package re-exports."""

__all__ = ["EXERCISES", "Exercise", "attempted", "show_solution",
           *(name for module in _NOTEBOOK_MODULES for name in module.__all__)]

# Re-exported from each module's own __all__ (the one list of its public names), not listed again here.
globals().update({name: getattr(module, name) for module in _NOTEBOOK_MODULES for name in module.__all__})
