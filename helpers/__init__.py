"""Gradient Flow: the tested library behind the course on vanishing and exploding gradients.

Modules, one idea each, in layers, lowest first. A module imports only from its own layer or
a lower one, at the top of the module, and no two import each other
(``tests/test_layering.py`` reads the imports and checks it).

L0 foundation
    :mod:`helpers._checks`        argument checks whose messages name the argument, the value and what is accepted
    :mod:`helpers._layers`        the one registry of weighted layer kinds, :data:`~helpers._layers.WEIGHTED_LAYERS`
    :mod:`helpers._fused`         torch's private multi-tensor functions, wrapped with a public fallback
    :mod:`helpers._flat`          many tensors as views of one buffer: one call steps them all (ensemble)
    :mod:`helpers._moved`         names that moved to another module say where, when imported from the old one
    :mod:`helpers._modes`         every module's own training/evaluation mode, kept and put back
    :mod:`helpers._stacked_chain` N stacked Linear/activation chains: forward and backward written out (ensemble)
    :mod:`helpers.progress`       progress bars that stay out of regression-tested outputs
    :mod:`helpers.claims`         a notebook's measured claims, asserted with a tolerance or over seeds
    :mod:`helpers.errata`         the source articles' mistakes and FAQ questions, as data
    :mod:`helpers.device`         choose CPU/GPU (``COURSE_DEVICE``), seed every generator, keep freed memory
    :mod:`helpers.data`           the bundled 8x8 digits, two spirals, the adding and copy tasks; batches
L1 layers and models
    :mod:`helpers.activations`    activations with hand-written derivatives; the one activation registry
    :mod:`helpers.init`           initialisation schemes equal to ``torch.nn.init``, LSUV
    :mod:`helpers.normalization`  batch, layer and RMS norm, weight normalization
    :mod:`helpers.regularization` L1/L2 penalties, inverted dropout
    :mod:`helpers.recurrent`      RNN, LSTM and GRU cells, a sequence model
    :mod:`helpers.models`         :class:`~helpers.models.MLP`, ``ConvNet``, ``DenseBlock`` with activation by name
    :mod:`helpers.transformer`    attention, pre-/post-LN blocks, QK-norm, DeepNorm and a tiny causal LM, equal to torch
    :mod:`helpers.theory`         mean-field predictions: the per-layer gradient factor chi
L2 optimisation
    :mod:`helpers.optim`          SGD, Adam, AdamW, RAdam equal to torch's
    :mod:`helpers.clipping`       clipping by value, by global norm (also over processes), unit-wise adaptive
    :mod:`helpers.schedulers`     learning-rate schedules
    :mod:`helpers.amp`            dynamic loss scaling, gradient accumulation
    :mod:`helpers.sharding`       clipping a model sharded over two processes, a runnable demo
L3 diagnostics
    :mod:`helpers.diagnostics`    per-layer and per-block gradient norms, :class:`~helpers.diagnostics.GradientMonitor`,
                                  Jacobian singular values
L4 training
    :mod:`helpers.training`       :func:`~helpers.training.fit` with a divergence guard -> ``History``
    :mod:`helpers.lr_finder`      the learning-rate range test, beside ``fit``
    :mod:`helpers.ensemble`       many seeds / learning rates of one network trained at once, each equal to ``fit``
    :mod:`helpers.checkup`        read a monitor, name the problem, suggest the fix
L5 top
    :mod:`helpers.plotting`       one function per recurring picture
    :mod:`helpers.solutions`      a worked solution for every exercise
    :mod:`helpers.exercises`      automatic checkers for the learners' exercises, one module per notebook
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
