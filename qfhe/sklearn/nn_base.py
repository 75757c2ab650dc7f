"""What ``NeuralNetClassifier`` and ``NeuralNetRegressor`` share: parameters, the ``"auto"``
architecture and training budget, ``fit`` (standardise, train with the accumulator bound, quantize),
``compile`` and ``prune``. The two estimators are in :mod:`qfhe.sklearn.neural_net`.

Examples
--------
>>> from qfhe.sklearn.nn_base import PruneReport
>>> PruneReport.COLUMNS[0]
'model'
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from torch import nn

from qfhe.compile import quantize_brevitas_qat_model
from qfhe.errors import ConfigurationError, InputClippingWarning, InputValidationError
from qfhe.model import QuantizedModule
from qfhe.prune import prune_structured, prune_to_accumulator
from qfhe.quant.config import parse_rounding
from qfhe.quant.preprocess import standardize_spec
from qfhe.report import Table
from qfhe.sklearn.base import FHEEstimatorMixin, fit_scaler
from qfhe.sklearn.defaults import (
    AUTO_ROUNDING_SAMPLES,
    MAX_EPOCHS,
    MIN_EPOCHS,
    MIN_WIDTH,
    OUTPUT_WIDTH,
    resolve_accum_bits,
)
from qfhe.sklearn.mlp import QuantMLP, activation_class, from_state, to_state, train_module
from qfhe.validation import as_bool, as_float, as_int
from sklearn.base import BaseEstimator, clone


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

    # Defaults chosen by measurement (benchmarks/builtin_nn.py, docs/guides/estimators.md): within
    # 2 points of scikit-learn on most tabular sets; on digits 0.98 with 128 lookups of at most 7 bits.
    def __init__(
        self,
        n_layers=3,
        n_hidden_neurons_multiplier=0.5,
        hidden_sizes=None,
        activation_function="relu",
        n_input_bits=4,
        n_w_bits=2,
        n_a_bits=2,
        n_accum_bits="auto",
        lr=0.01,
        max_epochs="auto",
        batch_size=32,
        weight_decay=0.01,
        random_state=None,
        verbose=False,
        rounding_threshold_bits=None,
        pruning_warmup=0.5,
    ):
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
                    f"hidden_sizes must be a sequence of positive ints (one per hidden layer), got {self.hidden_sizes!r}"
                )
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
                raise ConfigurationError(
                    f"n_accum_bits must be 'auto', an int from 2 to 16, or None for no bound, got {self.n_accum_bits!r}"
                )
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
        name = (
            self.activation_function
            if isinstance(self.activation_function, str)
            else activation_class(self.activation_function).__name__.lower()
        )
        cls = MLPClassifier if self._classifier else MLPRegressor
        mlp = cls(
            hidden_layer_sizes=self._hidden(
                X.shape[1], len(self.classes_) if self._classifier else int(np.prod(self.y_shape_) or 1)
            ),
            activation=acts.get(name, "relu"),
            learning_rate_init=self.lr,
            batch_size=self.batch_size,
            max_iter=self._epochs(len(X)),
            alpha=self.weight_decay,
            random_state=self._seed(),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Maximum iterations")  # the same epochs as ours
            if sample_weight is None:
                return make_pipeline(StandardScaler(), mlp).fit(X, y)
            return (
                make_pipeline(StandardScaler(), mlp).fit(X, y, mlpclassifier__sample_weight=sample_weight)
                if self._classifier
                else make_pipeline(StandardScaler(), mlp).fit(X, y, mlpregressor__sample_weight=sample_weight)
            )

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
            module = QuantMLP(
                X.shape[1],
                n_out,
                self._hidden(X.shape[1], n_out),
                self.n_input_bits,
                self.n_w_bits,
                self.n_a_bits,
                self.activation_function,
            )
        # an impossible or collapsing bound fails now, not after the warm-up
        self.n_accum_bits_ = resolve_accum_bits(
            self.n_accum_bits,
            module,
            Xs[:2],
            f"n_w_bits={self.n_w_bits}, n_a_bits={self.n_a_bits}, n_input_bits={self.n_input_bits}",
        )
        if self.n_accum_bits_ is not None:
            prune_to_accumulator(module, self.n_accum_bits_, example_input=Xs[:2])
        self.history_ = train_module(
            module,
            Xs,
            targets,
            self._loss,
            lr=self.lr,
            max_epochs=self._epochs(len(X)),
            sample_weight=weights,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=seed,
            n_accum_bits=self.n_accum_bits_,
            warmup=self.pruning_warmup,
            verbose=self.verbose,
            desc=f"{type(self).__name__}.fit",
        )
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
            qm = quantize_brevitas_qat_model(
                self.module_,
                self.scaler_.transform(X),
                rounding_threshold_bits="auto" if kw else self.rounding_threshold_bits,
                **kw,
            )
        qm.preprocess = [standardize_spec(self.scaler_.mean_, self.scaler_.scale_)]
        return qm

    def compile(
        self,
        X,
        p_error=None,
        global_p_error=None,
        configuration=None,
        simulate_batch_size: int = 64,
        bitwidth_method: str = "calibration",
        calibration_margin: float = 0.0,
        X_val=None,
        y_val=None,
    ):
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
            self.quantized_module_ = self._quantize(
                self._checked(X, "compile"), self._targets_for(yv, "compile").numpy(), Xv
            )
        return super().compile(
            X, p_error, global_p_error, configuration, simulate_batch_size, bitwidth_method, calibration_margin
        )

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
                f"n_prune_neurons_percentage must be in [0, 1), got {ratio!r}: removing every neuron leaves no model"
            )
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
        small.history_ = train_module(
            module,
            Xs,
            targets,
            self._loss,
            lr=self.lr,
            max_epochs=epochs,
            sample_weight=weights,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self._seed(),
            n_accum_bits=self.n_accum_bits_,
            warmup=0.0,
            verbose=self.verbose,
            desc=f"{type(self).__name__}.prune",
        )
        small.module_ = module
        small.quantized_module_ = small._quantize(Xv, targets.numpy())
        small.pruning_report_ = PruneReport(
            [est._summary(name, Xv, yv) for name, est in (("before", self), ("after", small))]
        )
        if self.verbose:
            print(small.pruning_report_)
        return small

    def _summary(self, name: str, X, y) -> dict:
        rows = self.quantized_module_.bitwidth_report()
        hidden = sum(m.out_features for m in self.module_.layers if isinstance(m, nn.Linear)) - self._n_outputs()
        return {
            "model": name,
            "hidden_neurons": hidden,
            "score": round(float(self.score(X, y)), 4),
            "max_acc_bits": max(r["acc_bits"] for r in rows),
        }

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
