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

Notebook → module (exercise ``N.k`` is the k-th exercise of notebook ``N``):

====================================  ==============================================  =========
notebook                              module (``helpers.exercises.…``)                exercises
====================================  ==============================================  =========
01 gradient descent, backpropagation  :mod:`~.nb01_gradient_descent_backprop`         1.1–1.3
02 vanishing and exploding gradients  :mod:`~.nb02_vanishing_exploding`               2.1–2.3
03 weight initialization              :mod:`~.nb03_weight_initialization`             3.1–3.3
04 activation functions               :mod:`~.nb04_activation_functions`              4.1–4.3
05 normalization                      :mod:`~.nb05_normalization`                     5.1–5.3
06 residual connections               :mod:`~.nb06_residual_connections`              6.1–6.2
07 gradient clipping                  :mod:`~.nb07_gradient_clipping`                 7.1–7.3
08 regularization                     :mod:`~.nb08_regularization`                    8.1–8.3
09 optimizers                         :mod:`~.nb09_optimizers`                        9.1–9.2
10 learning-rate schedules            :mod:`~.nb10_lr_schedules`                      10.1–10.2
11 recurrent networks                 :mod:`~.nb11_recurrent_networks`                11.1–11.3
12 mixed precision                    :mod:`~.nb12_mixed_precision`                   12.1–12.3
13 capstone                           :mod:`~.nb13_capstone`                          13.1–13.2
14 FAQ, errata, future directions     :mod:`~.nb14_faq_errata_future`                 14.1–14.2
15 Transformers                       :mod:`~.nb15_transformers`                      15.1–15.2
====================================  ==============================================  =========

Notebook 00 reuses exercise 1.1. The registry, :data:`EXERCISES` (id → :class:`Exercise`:
number, title, checker), the ``@exercise`` decorator that fills it and the checks every
checker shares live in :mod:`helpers.exercises._core`.
"""

from helpers.exercises._core import EXERCISES, Exercise, attempted, show_solution
from helpers.exercises.nb01_gradient_descent_backprop import (
    check_largest_stable_lr,
    check_linear_backward,
    check_quadratic_gradient,
)
from helpers.exercises.nb02_vanishing_exploding import (
    check_critical_sigma_w,
    check_exploding_exponent,
    check_layer_gradient_norms,
)
from helpers.exercises.nb03_weight_initialization import (
    check_he_uniform_bound,
    check_orthogonal_matrix,
    check_xavier_std,
)
from helpers.exercises.nb04_activation_functions import (
    check_dead_fraction,
    check_leaky_relu,
    check_sigmoid_derivative,
)
from helpers.exercises.nb05_normalization import (
    check_batch_norm_forward,
    check_running_variance,
    check_weight_norm,
)
from helpers.exercises.nb06_residual_connections import check_residual_block, check_residual_jacobian
from helpers.exercises.nb07_gradient_clipping import (
    check_clip_by_global_norm,
    check_clip_by_value,
    check_threshold_from_norms,
)
from helpers.exercises.nb08_regularization import (
    check_inverted_dropout,
    check_l1_gradient,
    check_weight_decay_step,
)
from helpers.exercises.nb09_optimizers import check_adam_step, check_momentum_step
from helpers.exercises.nb10_lr_schedules import check_cosine_lr, check_half_life_gamma
from helpers.exercises.nb11_recurrent_networks import check_bptt, check_growth_bound, check_gru_step
from helpers.exercises.nb12_mixed_precision import check_amp_step, check_float_spacing, check_scale_update
from helpers.exercises.nb13_capstone import check_gradient_verdict, check_update_ratios
from helpers.exercises.nb14_faq_errata_future import check_separable_conv, check_split_once
from helpers.exercises.nb15_transformers import check_causal_attention, check_loss_spikes

__all__ = [
    # the registry and the solutions
    "EXERCISES", "Exercise", "attempted", "show_solution",
    # 01
    "check_quadratic_gradient", "check_largest_stable_lr", "check_linear_backward",
    # 02
    "check_critical_sigma_w", "check_layer_gradient_norms", "check_exploding_exponent",
    # 03
    "check_xavier_std", "check_he_uniform_bound", "check_orthogonal_matrix",
    # 04
    "check_leaky_relu", "check_sigmoid_derivative", "check_dead_fraction",
    # 05
    "check_batch_norm_forward", "check_running_variance", "check_weight_norm",
    # 06
    "check_residual_block", "check_residual_jacobian",
    # 07
    "check_clip_by_value", "check_clip_by_global_norm", "check_threshold_from_norms",
    # 08
    "check_l1_gradient", "check_inverted_dropout", "check_weight_decay_step",
    # 09
    "check_momentum_step", "check_adam_step",
    # 10
    "check_cosine_lr", "check_half_life_gamma",
    # 11
    "check_gru_step", "check_bptt", "check_growth_bound",
    # 12
    "check_float_spacing", "check_scale_update", "check_amp_step",
    # 13
    "check_update_ratios", "check_gradient_verdict",
    # 14
    "check_split_once", "check_separable_conv",
    # 15
    "check_causal_attention", "check_loss_spikes",
]
