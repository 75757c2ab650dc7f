"""Small Brevitas models for the QAT tests."""

import brevitas.nn as qnn
import torch
from torch import nn


def calibrate(model: nn.Module, X: torch.Tensor) -> nn.Module:
    """One training-mode pass so activation quantizers collect statistics, then eval mode."""
    model.train()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.momentum = 1.0
        model(X)
    return model.eval()


class QMLP(nn.Module):
    def __init__(self, n_in=10, hidden=16, n_out=4, bits=3, bn=False, per_channel=False):
        super().__init__()
        kw = dict(weight_bit_width=bits, bias=True)
        if per_channel:
            kw["weight_scaling_per_output_channel"] = True
        self.quant_in = qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(n_in, hidden, **kw)
        self.bn = nn.BatchNorm1d(hidden) if bn else nn.Identity()
        self.act1 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(hidden, hidden, **kw)
        self.act2 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.fc3 = qnn.QuantLinear(hidden, n_out, **kw)

    def forward(self, x):
        x = self.act1(self.bn(self.fc1(self.quant_in(x))))
        return self.fc3(self.act2(self.fc2(x)))


class QCNN(nn.Module):
    """Conv + BatchNorm + ReLU, truncated average pooling, a shared-scale residual add, a Conv1d,
    a float add re-quantized by a QuantIdentity, QuantEltwiseAdd, torch.cat, sigmoid/tanh/hardtanh."""

    def __init__(self, bits=3):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_bit_width=bits, bias=True)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_bit_width=bits, bias=True)
        self.pool = qnn.TruncAvgPool2d(2)
        self.sig = qnn.QuantSigmoid(bit_width=bits, return_quant_tensor=True)
        self.conv1d = qnn.QuantConv1d(4, 2, 3, weight_bit_width=bits, bias=True)
        self.tanh = qnn.QuantTanh(bit_width=bits, return_quant_tensor=True)
        self.hard = qnn.QuantHardTanh(bit_width=bits, min_val=-1.0, max_val=1.0, return_quant_tensor=True)
        self.requant = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.eltadd = qnn.QuantEltwiseAdd(return_quant_tensor=True)
        self.fc = qnn.QuantLinear(2 * 14 + 4 * 16, 3, weight_bit_width=bits, bias=True)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(self.quant_in(x))))  # (4, 8, 8)
        y = self.act1(self.conv2(x))  # same quantizer: shared scale
        x = self.pool(x + y)  # residual add, truncated pool (4, 4, 4)
        s = self.sig(x)
        z = s.view(s.shape[0], 4, 16)
        z = self.tanh(self.conv1d(z))  # (2, 14)
        h = self.hard(z)
        w = self.requant(z.value + h.value)  # float add of two grids -> one lookup
        e = self.eltadd(w, h)  # QuantEltwiseAdd
        # torch.cat of two tensors on one grid (Brevitas 0.13.4's own QuantCat fails: no QuantTensor.cat)
        c = torch.cat([self.hard(e).flatten(1), self.hard(s).flatten(1)], dim=1)
        return self.fc(c)


class QAdaptive(nn.Module):
    """QuantConv2d → QuantReLU → TruncAdaptiveAvgPool2d → QuantLinear."""

    def __init__(self, bits=3):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)
        self.conv = qnn.QuantConv2d(1, 3, 3, padding=1, weight_bit_width=bits, bias=True)
        self.act = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.pool = qnn.TruncAdaptiveAvgPool2d((2, 2))
        self.fc = qnn.QuantLinear(12, 2, weight_bit_width=bits, bias=True)

    def forward(self, x):
        x = self.pool(self.act(self.conv(self.quant_in(x))))
        return self.fc(x.flatten(1))
