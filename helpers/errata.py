"""The source articles' mistakes and FAQ questions, as data: where each is said, and where the course shows it.

The course started from five Chinese blog articles on vanishing and exploding gradients,
numbered 000 to 004 (not shipped with the course: notebook 14 quotes what each says).

Notebook 14 demonstrates every :data:`ERRATA` entry and answers every :data:`FAQ`
question; ``tests/test_errata.py`` checks that each pointer names a notebook heading
that exists, so the references cannot rot when a notebook is edited.

Example:
    >>> len(ERRATA), ERRATA[0].key, ERRATA[0].article
    (26, 'E1', '000')
    >>> ERRATA[0].where
    "notebook 03, '5 · Build it: He (Kaiming) initialisation, and two wrong formulas measured'"
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Erratum", "Question", "ERRATA", "FAQ"]


class Erratum(NamedTuple):
    """One mistake of a source article (``article``: "000" to "004"): what it says, what is right, and the
    notebook section that measures it."""

    key: str
    article: str
    section: str
    says: str
    right: str
    notebook: str
    heading: str

    @property
    def where(self) -> str:
        return f"notebook {self.notebook}, {self.heading!r}"


class Question(NamedTuple):
    """One question of a source article's FAQ, and the notebook section that answers it by measurement."""

    key: str
    article: str
    section: str
    zh: str
    en: str
    notebook: str
    heading: str

    @property
    def where(self) -> str:
        return f"notebook {self.notebook}, {self.heading!r}"


ERRATA: tuple[Erratum, ...] = (
    Erratum("E1", "000", "3.1.1.2 He初始化", "He's uniform bound is √(2/(n_in+n_out))",
            "bound √(6/n_in), std √(2/n_in)",
            "03", "5 · Build it: He (Kaiming) initialisation, and two wrong formulas measured"),
    Erratum("E2", "000", "4.1, 4.2 (code)", "ReLU is `torch.max(0, x)`",
            "`torch.max(0, x)` raises TypeError; ReLU is `x.clamp(min=0)`",
            "04", "Common mistakes in activation code, run"),
    Erratum("E3", "000", "4.1 (code)", "`xavier_uniform_` on every parameter, biases included",
            "a bias has no fans (ValueError); initialise weights, zero the biases",
            "03", "A common mistake in code: Xavier on every parameter"),
    Erratum("E4", "000", "4.2 (code)", "`model.conv1.activation = ReLU()` adds an activation",
            "`forward` decides what runs; the attribute changes nothing",
            "04", "Common mistakes in activation code, run"),
    Erratum("E5", "000", "3.2.2 Clip梯度", "clip = min(max(g, v), v)",
            "min(max(g, −v), v); the article's formula always returns v",
            "07", "3 · Two common mistakes, run"),
    Erratum("E6", "000", "3.2.1 权重归一化", "weight normalization is w/‖w‖",
            "w = g·v/‖v‖ with a learned gain g",
            "05", "A common mistake: weight normalization without a gain"),
    Erratum("E7", "000", "3.1.4 Dropout; FAQ 6", "dropout reduces vanishing gradients",
            "dropout regularises; the gradient still vanishes",
            "08", "5 · Dropout does not cure vanishing gradients"),
    Erratum("E8", "001", "3.5 学习率衰减", "learning-rate decay helps against vanishing gradients",
            "η scales every layer alike; the first/last ratio is unchanged",
            "10", "A common claim: \"learning-rate decay helps against vanishing gradients\""),
    Erratum("E9", "001", "3.5 学习率衰减", "cosine annealing η_t = η(1 + cos(πt/T))",
            "η_min + ½(η − η_min)(1 + cos(πt/T)); without ½ it starts at 2η",
            "10", "1 · Theory: the schedules as formulas"),
    Erratum("E10", "001", "4 (batch_normalization)", "mean and std over `axis=(0, 1)`",
            "one mean and variance per feature: `axis=0`",
            "05", "8 · Two common mistakes in batch-norm code, run"),
    Erratum("E11", "001", "4 (batch_normalization)", "divide by σ + ε",
            "divide by √(σ² + ε), as the same article's batch-norm formula does",
            "05", "8 · Two common mistakes in batch-norm code, run"),
    Erratum("E12", "001", "4 (residual_connection)", "`H = F(x); return F(H + x)`",
            "x + F(x): the skip must bypass F",
            "06", "A common mistake: a residual block that applies F twice"),
    Erratum("E13", "001", "4 (gradient_descent)", "`train_test_split` inside the epoch loop",
            "split once, before training; shuffle only the training set",
            "01", "Mini-batch SGD"),
    Erratum("E14", "002", "3.2 权重初始化", "Xavier's std is √(d_in/d_out)",
            "√(2/(d_in+d_out))",
            "03", "5 · Build it: He (Kaiming) initialisation, and two wrong formulas measured"),
    Erratum("E15", "002", "4.1 梯度剪切示例", "`x_new = x_value + clipped_grad`",
            "x − η·clip(g): descent subtracts the gradient",
            "07", "3 · Two common mistakes, run"),
    Erratum("E16", "002", "6 FAQ 5", "批量正则化 (batch regularization)",
            "批量归一化, batch normalization",
            "05", "8 · Two common mistakes in batch-norm code, run"),
    Erratum("E17", "003", "5.3 残差连接", "ResidualBlock(64) then ResidualBlock(128), skip `x + inputs`",
            "a 1×1 projection on the skip when the channels change",
            "06", "A common mistake: adding tensors of different widths"),
    Erratum("E18", "004", "1.3 (2) LeakyReLU", "f(x) = ax for x < 0 and ax for x ≥ 0",
            "x for x ≥ 0, ax for x < 0",
            "04", "Common mistakes in activation code, run"),
    Erratum("E19", "004", "1.2.2.2", "ReLU makes the whole network's gradient 0",
            "ReLU nets at He init pass gradients; dead units come from bad steps (dying ReLU)",
            "04", "4 · See it: dying ReLU"),
    Erratum("E20", "000", "1 背景介绍", "gradients that are tiny are called \"vanishing or exploding\"",
            "tiny is vanishing; exploding is huge — opposite ends of one product",
            "14", "E20 · tiny gradients are vanishing, not exploding"),
    Erratum("E21", "000", "3.2.1 权重归一化", "weight normalization prevents exploding gradients",
            "it reparametrises w = g·v/‖v‖ and starts as the same function: it explodes when the plain net does",
            "14", "E21 · weight normalization does not bound the gradient"),
    Erratum("E22", "001", "3.5 (code)", "`learning_rate_decay(t, T, gamma)` returns `learning_rate * gamma**t`",
            "`learning_rate` is an undefined global (NameError) and `T` is ignored; pass η₀ and use γ^(t/T)",
            "14", "E22 · a decay function with an undefined global and an unused T"),
    Erratum("E23", "002", "4.1 (code)", "`tape.watch(x)` with `x = 20.0`, a Python float",
            "only tensors/variables are watched; differentiate with respect to a tensor",
            "14", "E23 · differentiating with respect to a Python float"),
    Erratum("E24", "002", "4.2 (code)", "`w` created inside `simple_model`, then `tape.gradient(y, [w])`",
            "`w` is local to the function: NameError; create it outside and pass it in",
            "14", "E24 · a weight that exists only inside the function"),
    Erratum("E25", "002", "6 Q1; also 004 1.2.3.1", "vanishing gradients leave training stuck in a local minimum",
            "the early layers' gradient vanishes while the loss is high and the later layers' gradient is not 0",
            "14", "E25 · a vanished gradient is not a local minimum"),
    Erratum("E26", "002", "6 Q4", "a too-large learning rate causes vanishing or exploding gradients",
            "it makes the iterates diverge (η > 2/λ), even with one parameter and no layers",
            "14", "E26 · a too-large learning rate diverges; it does not make gradients vanish"),
)

FAQ: tuple[Question, ...] = (
    Question("000-Q1", "000", "6 Q1", "为什么梯度消失问题会导致训练过慢或停止？",
             "Why does the vanishing gradient make training slow, or stop it?",
             "02", "3 · See it: the deep network does not learn"),
    Question("000-Q2", "000", "6 Q2", "为什么梯度爆炸问题会导致训练过程失控？",
             "Why does the exploding gradient make training run out of control?",
             "02", "4 · See it: exploding gradients"),
    Question("000-Q3", "000", "6 Q3", "为什么权重初始化可以解决梯度消失问题？",
             "Why can weight initialization solve the vanishing gradient?",
             "03", "7 · Fix it: He et al. (2015), a 30-layer ReLU net on the digits"),
    Question("000-Q4", "000", "6 Q4", "为什么激活函数选择可以解决梯度消失问题？",
             "Why can the choice of activation function solve the vanishing gradient?",
             "04", "6 · Fix it: each activation at its matching gain, 20 layers deep"),
    Question("000-Q5", "000", "6 Q5", "为什么批量归一化可以解决梯度消失问题？",
             "Why can batch normalization solve the vanishing gradient?",
             "05", "4 · Fix it: batch norm trains the deep sigmoid net"),
    Question("000-Q6", "000", "6 Q6", "为什么Dropout可以解决梯度消失问题？",
             "Why can dropout solve the vanishing gradient?",
             "08", "5 · Dropout does not cure vanishing gradients"),
    Question("002-Q1", "002", "6 Q1", "为什么梯度爆炸和梯度消失会导致训练不稳定？",
             "Why do exploding and vanishing gradients make training unstable?",
             "01", "6 · Fix it: choose the learning rate from the curvature"),
    Question("002-Q2", "002", "6 Q2", "为什么梯度剪切可以防止梯度爆炸？",
             "Why does gradient clipping prevent exploding gradients?",
             "07", "5 · Fix it: clipping rescues the blown-up run"),
    Question("002-Q3", "002", "6 Q3", "权重初始化和正则化有什么区别？",
             "What is the difference between weight initialization and regularization?",
             "08", "1 · Theory: a penalty on the weights"),
    Question("002-Q4", "002", "6 Q4", "如何选择合适的学习率？",
             "How do I choose a suitable learning rate?",
             "10", "6 · The LR range test"),
    Question("002-Q5", "002", "6 Q5", "为什么批量正则化可以防止梯度消失？",
             "Why does batch 'regularization' (normalization) prevent vanishing gradients?",
             "05", "2 · See it: the 20-layer sigmoid net, with and without normalization"),
    Question("003-9.1", "003", "9.1", "梯度裁剪的阈值如何选择？",
             "How do I choose the gradient-clipping threshold?",
             "07", "6 · Choosing the threshold"),
    Question("003-9.2", "003", "9.2", "权值正则化的系数如何选择？",
             "How do I choose the weight-regularization coefficient?",
             "08", "How to choose the coefficient"),
    Question("003-9.3", "003", "9.3", "残差连接的层数如何确定？",
             "How many residual blocks (layers) should I use?",
             "06", "8 · How many residual blocks?"),
)
