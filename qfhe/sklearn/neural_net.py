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

import numpy as np
import torch
from scipy.special import softmax
from sklearn.metrics import r2_score
from torch import nn

from qfhe.sklearn.base import accuracy, check_class_labels, label_indices
from qfhe.sklearn.defaults import MIN_STEPS
from qfhe.sklearn.nn_base import PruneReport, _NeuralNetBase
from sklearn.base import ClassifierMixin, RegressorMixin

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor", "PruneReport"]


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
        class_weight=None,
    ):
        super().__init__(
            n_layers,
            n_hidden_neurons_multiplier,
            hidden_sizes,
            activation_function,
            n_input_bits,
            n_w_bits,
            n_a_bits,
            n_accum_bits,
            lr,
            max_epochs,
            batch_size,
            weight_decay,
            random_state,
            verbose,
            rounding_threshold_bits,
            pruning_warmup,
        )
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
        self.classes_ = check_class_labels(self, y, "NeuralNetRegressor")[0]
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
        return {
            "kind": "regressor",
            "mean": np.asarray(self.y_mean_),
            "scale": np.asarray(self.y_scale_),
            "shape": [int(d) for d in self.y_shape_],
        }

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
