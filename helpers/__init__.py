"""Gradient Flow: the tested library behind the course on vanishing and exploding gradients.

Modules, one idea each:

- :mod:`helpers.device`      choose CPU/GPU (``COURSE_DEVICE``) and seed every generator
- :mod:`helpers.data`        the bundled 8x8 digits and the two-spirals toy problem
- :mod:`helpers.models`      :class:`~helpers.models.MLP` with activation by name
- :mod:`helpers.diagnostics` per-layer gradient norms, :class:`~helpers.diagnostics.GradientMonitor`,
                             Jacobian singular values
- :mod:`helpers.theory`      mean-field predictions: the per-layer gradient factor chi
- :mod:`helpers.training`    :func:`~helpers.training.fit` with a divergence guard -> ``History``
- :mod:`helpers.ensemble`    many seeds / learning rates of one network trained at once, each equal to ``fit``
- :mod:`helpers.transformer` attention, pre-/post-LN blocks, QK-norm, DeepNorm and a tiny causal LM, equal to torch
- :mod:`helpers.plotting`    one function per recurring picture
- :mod:`helpers.progress`    progress bars that stay out of regression-tested outputs
- :mod:`helpers.claims`      a notebook's measured claims, asserted with a tolerance or over seeds
- :mod:`helpers.exercises`   automatic checkers for the learners' exercises
"""

__version__ = "0.1.0"
