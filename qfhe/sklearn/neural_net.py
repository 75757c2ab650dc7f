"""``NeuralNetClassifier`` and ``NeuralNetRegressor``: Brevitas QAT MLPs with a per-neuron accumulator bound.

``fit`` standardises the inputs (on the client), trains a :class:`qfhe.sklearn.mlp.QuantMLP`
with quantization in the loop, keeps in every neuron only as many weights as its accumulator can
sum within ``n_accum_bits`` (:func:`qfhe.prune.prune_to_accumulator`), and quantizes the result
with :func:`qfhe.quantize_brevitas_qat_model`. ``compile`` builds the circuit; ``prune`` removes
hidden neurons with torch-pruning and fine-tunes.

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import NeuralNetClassifier
>>> X = np.random.RandomState(0).randn(120, 4); y = (X[:, 0] > 0).astype(int)
>>> clf = NeuralNetClassifier(max_epochs=5, random_state=0).fit(X, y)
>>> clf.predict(X[:3]).shape, clf.classes_.tolist()
((3,), [0, 1])
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from torch import nn

from qfhe.compile import quantize_brevitas_qat_model
from qfhe.errors import ConfigurationError, InputClippingWarning, InputValidationError
from qfhe.model import QuantizedModule
from qfhe.prune import prune_structured, prune_to_accumulator
from qfhe.quant.config import parse_rounding
from qfhe.quant.preprocess import standardize_spec
from qfhe.report import Table
from qfhe.sklearn.base import FHEEstimatorMixin, accuracy, fit_scaler, label_indices
from qfhe.sklearn.defaults import (AUTO_ROUNDING_SAMPLES, MAX_EPOCHS, MIN_EPOCHS, MIN_STEPS, MIN_WIDTH,
                                   OUTPUT_WIDTH, resolve_accum_bits)
from qfhe.sklearn.mlp import QuantMLP, activation_class, from_state, to_state, train_module
from qfhe.validation import as_bool, as_float, as_int


class PruneReport(Table):
    """Before and after :meth:`NeuralNetClassifier.prune`: hidden neurons (one table lookup each),
    score, widest accumulator.

    Examples
    --------
    >>> print(PruneReport([{"model": "before", "hidden_neurons": 128, "score": 0.97, "max_acc_bits": 10}]))
    model   hidden_neurons  score  max_acc_bits
    before             128   0.97            10
    """

    COLUMNS = ("model", "hidden_neurons", "score", "max_acc_bits")


class _NeuralNetBase(FHEEstimatorMixin, BaseEstimator):
    """Parameters, training and pruning shared by the classifier and the regressor."""

    # Defaults chosen by measurement (benchmarks/builtin_nn.py, README "Built-in estimators"): within
    # 2 points of scikit-learn on most tabular sets; on digits 0.98 with 128 lookups of at most 7 bits.
    def __init__(self, n_layers=3, n_hidden_neurons_multiplier=0.5, hidden_sizes=None, activation_function="relu",
                 n_input_bits=4, n_w_bits=2, n_a_bits=2, n_accum_bits="auto", lr=0.01, max_epochs="auto", batch_size=32,
                 weight_decay=0.01, random_state=None, verbose=False, rounding_threshold_bits=None,
                 pruning_warmup=0.5):
        self.n_layers = n_layers
        self.n_hidden_neurons_multiplier = n_hidden_neurons_multiplier
        self.hidden_sizes = hidden_sizes
        self.activation_function = activation_function
        self.n_input_bits = n_input_bits
        self.n_w_bits = n_w_bits
        self.n_a_bits = n_a_bits
        self.n_accum_bits = n_accum_bits
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.rounding_threshold_bits = rounding_threshold_bits
        self.pruning_warmup = pruning_warmup

    # -- parameters ---------------------------------------------------------------------------------
    def _epochs(self, n_samples: int) -> int:
        """``max_epochs``, or for ``"auto"`` enough epochs for ``_min_steps`` optimizer steps (at
        least MIN_EPOCHS, at most MAX_EPOCHS): a small tabular set gives a few batches per epoch, and
        60 epochs of them left iris and 5-feature sets under-trained."""
        if not isinstance(self.max_epochs, str):
            return int(self.max_epochs)
        steps = -(-n_samples // int(self.batch_size))
        return int(min(MAX_EPOCHS, max(MIN_EPOCHS, -(-self._min_steps // steps))))

    def _hidden(self, n_features: int, n_outputs: int = 1) -> tuple[int, ...]:
        if self.hidden_sizes is not None:
            sizes = tuple(self.hidden_sizes) if not isinstance(self.hidden_sizes, numbers.Integral) else None
            if sizes is None or any(not isinstance(h, numbers.Integral) or h < 1 for h in sizes):
                raise ConfigurationError(
                    f"hidden_sizes must be a sequence of positive ints (one per hidden layer), got {self.hidden_sizes!r}")
            return tuple(int(h) for h in sizes)
        n_layers = as_int("n_layers", self.n_layers, 1, 64)
        mult = as_float("n_hidden_neurons_multiplier", self.n_hidden_neurons_multiplier, 0.0, 1e4)
        # a floor and a width that follows the classes: 0.5 x 4 features gave iris 2 neurons
        return (max(MIN_WIDTH, int(round(mult * n_features)), OUTPUT_WIDTH * n_outputs),) * (n_layers - 1)

    def _check_params(self) -> None:
        as_int("n_input_bits", self.n_input_bits, 2, 8)
        as_int("n_w_bits", self.n_w_bits, 2, 8)
        as_int("n_a_bits", self.n_a_bits, 1, 8)
        if isinstance(self.n_accum_bits, str):
            if self.n_accum_bits.lower() != "auto":
                raise ConfigurationError(f"n_accum_bits must be 'auto', an int from 2 to 16, or None for no bound, "
                                         f"got {self.n_accum_bits!r}")
        elif self.n_accum_bits is not None:
            as_int("n_accum_bits", self.n_accum_bits, 2, 16, "'auto', an int from 2 to 16, or None for no bound")
        as_float("lr", self.lr, 0.0, 10.0)
        if not (isinstance(self.max_epochs, str) and self.max_epochs.lower() == "auto"):
            as_int("max_epochs", self.max_epochs, 1, None, "'auto' or a positive int")
        as_int("batch_size", self.batch_size, 2, None, "an int >= 2 (BatchNorm needs 2 samples per batch)")
        as_float("weight_decay", self.weight_decay, 0.0, 10.0, closed=True)
        as_bool("verbose", self.verbose)
        as_float("pruning_warmup", self.pruning_warmup, 0.0, 1.0, closed=True)
        if not self._auto_rounding():
            parse_rounding(self.rounding_threshold_bits)
        activation_class(self.activation_function)

    def _auto_rounding(self) -> bool:
        return isinstance(self.rounding_threshold_bits, str) and self.rounding_threshold_bits.lower() == "auto"

    def _sample_weights(self, y, sample_weight) -> np.ndarray | None:
        """``sample_weight`` (validated) times the classifier's ``class_weight``; None when both are unset."""
        from sklearn.utils.class_weight import compute_sample_weight
        from sklearn.utils.validation import _check_sample_weight

        class_weight = getattr(self, "class_weight", None)
        if sample_weight is None and class_weight is None:
            return None
        try:
            w = _check_sample_weight(sample_weight, np.empty((len(y), 1)), dtype=np.float64)
            if class_weight is not None:
                w = w * compute_sample_weight(class_weight, y)
        except ValueError as exc:
            raise InputValidationError(f"{type(self).__name__}.fit: sample_weight/class_weight: {exc}") from exc
        if (w < 0).any() or w.sum() <= 0:
            raise InputValidationError(f"{type(self).__name__}.fit: sample weights must be >= 0 with a positive sum")
        return w

    def _float_twin(self, X, y, sample_weight=None):
        """scikit-learn's MLP of the same architecture and training settings, in float."""
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        from sklearn.pipeline import make_pipeline

        acts = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}
        name = self.activation_function if isinstance(self.activation_function, str) else \
            activation_class(self.activation_function).__name__.lower()
        cls = MLPClassifier if self._classifier else MLPRegressor
        mlp = cls(hidden_layer_sizes=self._hidden(X.shape[1], len(self.classes_) if self._classifier else
                                                  int(np.prod(self.y_shape_) or 1)),
                  activation=acts.get(name, "relu"), learning_rate_init=self.lr, batch_size=self.batch_size,
                  max_iter=self._epochs(len(X)), alpha=self.weight_decay, random_state=self._seed())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Maximum iterations")  # the same epochs as ours
            if sample_weight is None:
                return make_pipeline(StandardScaler(), mlp).fit(X, y)
            return make_pipeline(StandardScaler(), mlp).fit(X, y, mlpclassifier__sample_weight=sample_weight) \
                if self._classifier else make_pipeline(StandardScaler(), mlp).fit(X, y, mlpregressor__sample_weight=sample_weight)

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Standardise, train with quantization in the loop and the accumulator bound, quantize.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            A numpy array, a pandas DataFrame (its column names are kept, as in scikit-learn), ...
        y : array-like, shape (n_samples,) (or (n_samples, n_targets) for the regressor)
        sample_weight : array-like, shape (n_samples,), optional
            Weights of the samples in the training loss (times the classifier's ``class_weight``).

        Returns
        -------
        self

        Raises
        ------
        InputValidationError
            For NaN/inf, mismatched lengths, one sample, or (classifier) a continuous target.
        ConfigurationError
            For an invalid parameter, e.g. an ``n_accum_bits`` that would leave a neuron fewer than
            4 weights at these bit-widths (the message gives the width to use).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetRegressor
        >>> X = np.random.RandomState(0).randn(80, 3)
        >>> reg = NeuralNetRegressor(max_epochs=3, random_state=0).fit(X, X[:, 0])
        >>> reg.n_features_in_, len(reg.history_)
        (3, 3)
        """
        self._check_params()
        X, y = self._validate_Xy(X, y, "fit", multi_output=not self._classifier)
        targets, n_out = self._encode_targets(y)
        weights = self._sample_weights(y, sample_weight)
        self.scaler_ = fit_scaler(X)
        Xs = self.scaler_.transform(X)
        seed = self._seed()
        with torch.random.fork_rng():  # seeded weights without touching the caller's generator
            torch.manual_seed(seed)
            module = QuantMLP(X.shape[1], n_out, self._hidden(X.shape[1], n_out), self.n_input_bits, self.n_w_bits,
                              self.n_a_bits, self.activation_function)
        # an impossible or collapsing bound fails now, not after the warm-up
        self.n_accum_bits_ = resolve_accum_bits(
            self.n_accum_bits, module, Xs[:2],
            f"n_w_bits={self.n_w_bits}, n_a_bits={self.n_a_bits}, n_input_bits={self.n_input_bits}")
        if self.n_accum_bits_ is not None:
            prune_to_accumulator(module, self.n_accum_bits_, example_input=Xs[:2])
        self.history_ = train_module(module, Xs, targets, self._loss, lr=self.lr, max_epochs=self._epochs(len(X)),
                                     sample_weight=weights,
                                     batch_size=self.batch_size, weight_decay=self.weight_decay, seed=seed,
                                     n_accum_bits=self.n_accum_bits_, warmup=self.pruning_warmup,
                                     verbose=self.verbose, desc=f"{type(self).__name__}.fit")
        self.module_ = module
        self.quantized_module_ = self._quantize(X, targets)
        return self

    def _quantize(self, X: np.ndarray, targets=None, X_val=None) -> QuantizedModule:
        """The trained module as a QuantizedModule that takes raw features (it standardises them first).

        With ``rounding_threshold_bits="auto"`` the rounding is searched on ``(X_val, targets)``, or on
        up to ``AUTO_ROUNDING_SAMPLES`` samples of ``(X, targets)``: the search compares the rounded
        model with the same model unrounded, so training samples measure it without bias."""
        kw = {}
        if self._auto_rounding():
            if X_val is None:
                idx = np.unique(np.linspace(0, len(X) - 1, min(len(X), AUTO_ROUNDING_SAMPLES)).astype(int))
                X_val, targets = X[idx], np.asarray(targets)[idx]
            kw = {"X_val": self.scaler_.transform(X_val), "y_val": np.asarray(targets), "rounding_tolerance": 0.01}
        with warnings.catch_warnings():
            # constant standardised features are normal in tabular data (and were already fitted around)
            warnings.filterwarnings("ignore", message=".*never vary in the inputset")
            qm = quantize_brevitas_qat_model(self.module_, self.scaler_.transform(X),
                                             rounding_threshold_bits="auto" if kw else self.rounding_threshold_bits,
                                             **kw)
        qm.preprocess = [standardize_spec(self.scaler_.mean_, self.scaler_.scale_)]
        return qm

    def compile(self, X, p_error=None, global_p_error=None, configuration=None, simulate_batch_size: int = 64,
                bitwidth_method: str = "calibration", calibration_margin: float = 0.0, X_val=None, y_val=None):
        """As :meth:`qfhe.sklearn.base.FHEEstimatorMixin.compile`; with ``rounding_threshold_bits="auto"``,
        ``X_val, y_val`` (held-out data) re-run the rounding search on them before compiling.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(0).randn(120, 4); y = (X[:, 0] > 0).astype(int)
        >>> clf = NeuralNetClassifier(hidden_sizes=(8,), max_epochs=3, rounding_threshold_bits="auto").fit(X, y)
        >>> clf.compile(X, X_val=X[:40], y_val=y[:40]).quantized_module_.rounding_plan is not None
        True
        """
        if X_val is not None or y_val is not None:
            if not self._auto_rounding():
                raise ConfigurationError("X_val and y_val are only used by rounding_threshold_bits='auto'")
            if X_val is None or y_val is None:
                raise ConfigurationError("give both X_val and y_val")
            self._check_fitted()
            Xv, yv = self._validate_Xy(X_val, y_val, "compile", multi_output=not self._classifier, reset=False)
            self.quantized_module_ = self._quantize(self._checked(X, "compile"), self._targets_for(yv, "compile")
                                                    .numpy(), Xv)
        return super().compile(X, p_error, global_p_error, configuration, simulate_batch_size, bitwidth_method,
                               calibration_margin)

    def _forward(self, X, fhe: str, where: str) -> np.ndarray:
        with warnings.catch_warnings():
            # The input quantizer was trained: its clipping is part of the model, as it was in training.
            warnings.simplefilter("ignore", InputClippingWarning)
            return super()._forward(X, fhe, where)

    def _input_codes(self, X, where: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputClippingWarning)
            return super()._input_codes(X, where)

    # -- prune -----------------------------------------------------------------------------------
    def prune(self, X, y, n_prune_neurons_percentage: float = 0.5, max_epochs: int | None = None):
        """A new fitted estimator with a fraction of every hidden layer's neurons removed, fine-tuned.

        The neurons with the smallest weights go (:func:`qfhe.prune.prune_structured`, torch-pruning
        keeps the BatchNorm and the next layer consistent), so the circuit has that many fewer table
        lookups; then the model is fine-tuned with the per-neuron accumulator bound. ``self`` is not
        changed. The new estimator's ``pruning_report_`` compares neurons, score on ``(X, y)``,
        widest accumulator and lookups before and after (printed when ``verbose``).

        Parameters
        ----------
        X, y : array-like
            Training data for the fine-tuning (and the report's score).
        n_prune_neurons_percentage : float in [0, 1)
            Fraction of each hidden layer's neurons to remove.
        max_epochs : int, optional
            Fine-tuning epochs; default half of ``max_epochs``.

        Returns
        -------
        estimator
            Fitted (not compiled), with ``hidden_sizes`` set to the new widths.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(0).randn(100, 4); y = (X[:, 0] > 0).astype(int)
        >>> clf = NeuralNetClassifier(hidden_sizes=(8, 8), max_epochs=4, random_state=0).fit(X, y)
        >>> small = clf.prune(X, y, 0.5, max_epochs=2)
        >>> small.hidden_sizes, [r["hidden_neurons"] for r in small.pruning_report_]
        ((4, 4), [16, 8])
        """
        self._check_fitted()
        ratio = as_float("n_prune_neurons_percentage", n_prune_neurons_percentage, 0.0, 1.0, closed=True)
        if ratio >= 1.0:
            raise ConfigurationError(
                f"n_prune_neurons_percentage must be in [0, 1), got {ratio!r}: removing every neuron leaves no model")
        epochs = max(1, self._epochs(len(X)) // 2) if max_epochs is None else as_int("max_epochs", max_epochs, 1)
        Xv, yv = self._validate_Xy(X, y, "prune", multi_output=not self._classifier, reset=False)
        targets = self._targets_for(yv, "prune")
        weights = self._sample_weights(yv, None)
        Xs = self.scaler_.transform(Xv)
        module = prune_structured(self.module_, Xs[:2], ratio=ratio)
        small = clone(self)
        small.hidden_sizes = tuple(m.out_features for m in module.layers if isinstance(m, nn.Linear))[:-1]
        for name in self._fitted_state:
            setattr(small, name, getattr(self, name))
        small.history_ = train_module(module, Xs, targets, self._loss, lr=self.lr, max_epochs=epochs, sample_weight=weights,
                                      batch_size=self.batch_size, weight_decay=self.weight_decay, seed=self._seed(),
                                      n_accum_bits=self.n_accum_bits_, warmup=0.0, verbose=self.verbose,
                                      desc=f"{type(self).__name__}.prune")
        small.module_ = module
        small.quantized_module_ = small._quantize(Xv, targets.numpy())
        small.pruning_report_ = PruneReport([est._summary(name, Xv, yv) for name, est in
                                             (("before", self), ("after", small))])
        if self.verbose:
            print(small.pruning_report_)
        return small

    def _summary(self, name: str, X, y) -> dict:
        rows = self.quantized_module_.bitwidth_report()
        hidden = sum(m.out_features for m in self.module_.layers if isinstance(m, nn.Linear)) - self._n_outputs()
        return {"model": name, "hidden_neurons": hidden, "score": round(float(self.score(X, y)), 4),
                "max_acc_bits": max(r["acc_bits"] for r in rows)}

    def _n_outputs(self) -> int:
        return self.module_.layers[-1].out_features

    def __getstate__(self):
        state = super().__getstate__()
        if "module_" in state:  # Brevitas modules cannot be pickled; their spec and tensors can
            state = {**state, "module_": to_state(state["module_"])}
        return state

    def __setstate__(self, state):
        if isinstance(state.get("module_"), dict):
            state = {**state, "module_": from_state(state["module_"])}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class NeuralNetClassifier(ClassifierMixin, _NeuralNetBase):
    """A quantization-aware-trained MLP classifier that runs on encrypted data.

    Hidden layers are ``QuantLinear → BatchNorm1d → activation quantizer`` (BatchNorm fuses into
    the table lookup); the output layer's logits are dequantized on the client, which then takes
    the softmax/argmax in the clear. Every neuron keeps at most the number of non-zero weights its
    accumulator can sum within ``n_accum_bits`` bits, for any input: compiled with
    ``bitwidth_method="interval"`` and no rounding, no accumulator is wider.

    Parameters
    ----------
    n_layers : int
        Linear layers, the output layer included (``n_layers - 1`` hidden layers).
    n_hidden_neurons_multiplier : float
        Hidden width = this x the number of input features, but at least 64 and at least 3 per
        class (ignored when ``hidden_sizes`` is set).
    hidden_sizes : sequence of int, optional
        Width of each hidden layer; overrides ``n_layers`` and the multiplier.
    activation_function : str or torch activation class
        ``"relu"`` (a Brevitas ``QuantReLU``) or one of ``"sigmoid", "tanh", "gelu", "silu",
        "leaky_relu", "elu", "hardtanh"`` (followed by a ``QuantIdentity``).
    n_input_bits, n_w_bits, n_a_bits : int
        Bit-widths of the input quantizer, of the weights and of the hidden activations.
    n_accum_bits : "auto", int or None
        Per-neuron accumulator bound (sign bit included). ``"auto"`` follows the bit-widths: the
        narrowest width from 8 up in which every neuron can keep 12 weights (8 bits at the default
        2/2 bits, 10 at 3/3, 12 at 4/4); an int that would leave a neuron fewer than 4 weights is
        refused with the numbers; None trains without a bound.
    lr, max_epochs, batch_size, weight_decay
        AdamW (decoupled weight decay, torch's default of 0.01) with a cosine learning-rate
        schedule over ``max_epochs``. ``max_epochs="auto"``
        trains a classifier for about 3000 optimizer steps (at least 60 epochs, at most 500):
        small tabular sets need many more epochs than digits; a regressor trains 60 epochs
        (regression overfits sooner).
    random_state : int, RandomState or None
        Seeds the initial weights and the batch order (torch's global generator is left alone).
    verbose : bool
        tqdm progress bars during training.
    rounding_threshold_bits : int, dict, "approximate" spec, "auto" or None
        As in :func:`qfhe.compile_brevitas_qat_model`: table lookups read accumulators rounded to
        this many bits. ``"auto"`` searches the per-layer rounding within one point of the
        unrounded model, on ``fit``'s data (or on ``compile(X, X_val=, y_val=)``).
    pruning_warmup : float in [0, 1]
        Fraction of the epochs trained dense before the per-neuron masks are chosen (from the
        weights' magnitudes) and fixed.
    class_weight : dict, "balanced" or None
        Weights of the classes in the training loss, as in scikit-learn.

    Attributes
    ----------
    classes_ : ndarray
    n_accum_bits_ : int or None
        The accumulator bound used.
    module_ : torch.nn.Module
        The trained Brevitas model (masks made permanent: pruned weights are zeros).
    scaler_ : sklearn.preprocessing.StandardScaler
        Input standardisation, run on the client.
    quantized_module_ : qfhe.QuantizedModule
        ``bitwidth_report()``, and after :meth:`compile`, ``statistics`` and ``fhe_circuit``.
    history_ : list of dict
        Per-epoch training loss.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import NeuralNetClassifier
    >>> X = np.random.RandomState(0).randn(200, 4); y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    >>> clf = NeuralNetClassifier(hidden_sizes=(16,), max_epochs=10, random_state=0).fit(X, y).compile(X)
    >>> clf.predict(X[:2], fhe="simulate").tolist() == clf.predict(X[:2]).tolist()
    True
    >>> bool(np.allclose(clf.predict_proba(X[:2]).sum(1), 1))
    True
    """

    _classifier = True
    _min_steps = MIN_STEPS  # max_epochs="auto" (see qfhe.sklearn.defaults)
    _fitted_state = ("scaler_", "classes_", "n_features_in_", "n_accum_bits_")

    def __init__(self, n_layers=3, n_hidden_neurons_multiplier=0.5, hidden_sizes=None, activation_function="relu",
                 n_input_bits=4, n_w_bits=2, n_a_bits=2, n_accum_bits="auto", lr=0.01, max_epochs="auto", batch_size=32,
                 weight_decay=0.01, random_state=None, verbose=False, rounding_threshold_bits=None,
                 pruning_warmup=0.5, class_weight=None):
        super().__init__(n_layers, n_hidden_neurons_multiplier, hidden_sizes, activation_function, n_input_bits,
                         n_w_bits, n_a_bits, n_accum_bits, lr, max_epochs, batch_size, weight_decay, random_state,
                         verbose, rounding_threshold_bits, pruning_warmup)
        self.class_weight = class_weight

    def decision_function(self, X, fhe: str = "disable") -> np.ndarray:
        """The logits (decrypted, dequantized), shape (n_samples, n_classes), as scikit-learn's MLP
        gives before its softmax; ``predict`` takes their argmax. With two classes, as scikit-learn
        does, one score per sample: the second logit minus the first (positive means ``classes_[1]``).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(0).randn(60, 3); y = np.arange(60) % 3
        >>> NeuralNetClassifier(max_epochs=2, random_state=0).fit(X, y).decision_function(X[:4]).shape
        (4, 3)
        """
        logits = self._forward(X, fhe, "decision_function")
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    @staticmethod
    def _loss(outputs, targets):
        """Per-sample losses (``train_module`` weights and averages them)."""
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    def _encode_targets(self, y) -> tuple[np.ndarray, int]:
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise InputValidationError(
                f"{type(self).__name__}.fit: y: {exc}. A classifier needs class labels; for a continuous target use "
                "NeuralNetRegressor") from exc
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise InputValidationError(
                f"{type(self).__name__}.fit: y has only one class ({self.classes_[0]!r}); a classifier needs at least "
                "2 classes")
        return self._targets_for(y, "fit"), len(self.classes_)

    def _targets_for(self, y, where: str) -> torch.Tensor:
        return torch.as_tensor(label_indices(self, y, where), dtype=torch.long)

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities: softmax, on the client, of the decrypted logits.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(1).randn(60, 3); y = (X[:, 0] > 0).astype(int)
        >>> NeuralNetClassifier(max_epochs=2, random_state=0).fit(X, y).predict_proba(X[:4]).shape
        (4, 2)
        """
        return softmax(self._forward(X, fhe, "predict_proba"), axis=1)

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted labels (argmax of the decrypted logits, on the client).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(1).randn(60, 3); y = np.where(X[:, 0] > 0, "a", "b")
        >>> NeuralNetClassifier(max_epochs=2, random_state=0).fit(X, y).predict(X[:2]).dtype.kind
        'U'
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, logits: np.ndarray) -> np.ndarray:
        return self.classes_[logits.argmax(axis=1)]

    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted logits (plain data, see qfhe.deploy.processing)."""
        return {"kind": "classifier", "link": "softmax", "classes": np.asarray(self.classes_)}

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """Accuracy in an FHE mode.

        Raises
        ------
        InputValidationError
            When ``y`` holds a label not seen in ``fit`` (named).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetClassifier
        >>> X = np.random.RandomState(1).randn(60, 3); y = (X[:, 0] > 0).astype(int)
        >>> 0 <= NeuralNetClassifier(max_epochs=5, random_state=0).fit(X, y).score(X, y) <= 1
        True
        """
        return accuracy(self, X, y, sample_weight, fhe)


class NeuralNetRegressor(RegressorMixin, _NeuralNetBase):
    """A quantization-aware-trained MLP regressor that runs on encrypted data.

    Same architecture and parameters as :class:`NeuralNetClassifier`; the targets are standardised
    for training and the decrypted outputs are mapped back on the client. Several targets
    (``y`` of shape (n, k)) are supported.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import NeuralNetRegressor
    >>> X = np.random.RandomState(0).randn(200, 3); y = 10 * X[:, 0] + 3
    >>> reg = NeuralNetRegressor(hidden_sizes=(16,), max_epochs=20, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.8
    True
    """

    _classifier = False
    _min_steps = 0  # max_epochs="auto": MIN_EPOCHS (see qfhe.sklearn.defaults)
    _fitted_state = ("scaler_", "y_mean_", "y_scale_", "y_shape_", "n_features_in_", "n_accum_bits_")

    @staticmethod
    def _loss(outputs, targets):
        """Per-sample losses (``train_module`` weights and averages them)."""
        return nn.functional.mse_loss(outputs, targets, reduction="none").mean(dim=1)

    def _encode_targets(self, y) -> tuple[np.ndarray, int]:
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self.y_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self.y_scale_ = np.where(scale > 0, scale, 1.0)
        self.y_shape_ = np.shape(y)[1:]
        return self._targets_for(y, "fit"), y2.shape[1]

    def _targets_for(self, y, where: str) -> torch.Tensor:
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return torch.as_tensor((y2 - self.y_mean_) / self.y_scale_, dtype=torch.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted targets (decrypted outputs, de-standardised on the client).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetRegressor
        >>> X = np.random.RandomState(1).randn(60, 3)
        >>> NeuralNetRegressor(max_epochs=2, random_state=0).fit(X, X[:, 0]).predict(X[:4]).shape
        (4,)
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        out = out * self.y_scale_ + self.y_mean_
        return out.reshape((len(out),) + tuple(self.y_shape_))

    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted outputs (plain data, see qfhe.deploy.processing)."""
        return {"kind": "regressor", "mean": np.asarray(self.y_mean_), "scale": np.asarray(self.y_scale_),
                "shape": [int(d) for d in self.y_shape_]}

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """R² in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import NeuralNetRegressor
        >>> X = np.random.RandomState(1).randn(60, 3)
        >>> NeuralNetRegressor(max_epochs=2, random_state=0).fit(X, X[:, 0]).score(X, X[:, 0]) <= 1
        True
        """
        return float(r2_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight))
