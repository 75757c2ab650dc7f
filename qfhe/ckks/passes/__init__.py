"""The CKKS pass pipeline. Each pass is a small module documenting what it requires and ensures.

Examples
--------
>>> [p.name for p in default_pipeline().passes][:3]
['InputPackingPass', 'NonlinearToPolynomialPass', 'LinearLayerBSGSPass']
"""

from qfhe.ckks.passes.base import HEPass, PassPipeline
from qfhe.ckks.passes.bootstrapping import BootstrappingInsertionPass
from qfhe.ckks.passes.cost import CostAnalysis, CostAnalysisPass
from qfhe.ckks.passes.dce import DeadCodeEliminationPass
from qfhe.ckks.passes.linear import LinearLayerBSGSPass
from qfhe.ckks.passes.packing import InputPackingPass
from qfhe.ckks.passes.polynomial import NonlinearToPolynomialPass
from qfhe.ckks.passes.printing import PrintGraphPass
from qfhe.ckks.passes.relinearization import RelinearizationInsertionPass
from qfhe.ckks.passes.rescaling import RescalingInsertionPass


def default_pipeline(
    degree: int = 8, bootstrapping: bool = True, level_threshold: float = 2.0, strategy: str = "row_major"
) -> PassPipeline:
    """The fully optimized pipeline: packing, polynomials, BSGS, lazy rescale and relinearize,
    (minimal) bootstrapping, DCE and cost analysis.

    Examples
    --------
    >>> len(default_pipeline(bootstrapping=False).passes)
    7
    """
    passes = [
        InputPackingPass(strategy=strategy),
        NonlinearToPolynomialPass(degree=degree),
        LinearLayerBSGSPass(min_size=16),
        RescalingInsertionPass(strategy="lazy"),
        RelinearizationInsertionPass(strategy="lazy"),
    ]
    if bootstrapping:
        passes.append(BootstrappingInsertionPass(level_threshold=level_threshold, strategy="minimal"))
    passes += [DeadCodeEliminationPass(), CostAnalysisPass()]
    return PassPipeline(passes)


def comparison_pipelines(degree: int = 8, level_threshold: float = 30.0, min_size: int = 16) -> dict:
    """The five pipelines the benchmark compares, by name.

    Examples
    --------
    >>> list(comparison_pipelines())
    ['Baseline (eager)', 'BSGS only', 'Lazy only', 'BSGS+Lazy', 'Fully optimized']
    """

    def build(bsgs: bool, lazy: bool, boot: bool) -> PassPipeline:
        strategy = "lazy" if lazy else "eager"
        passes = [InputPackingPass(strategy="row_major"), NonlinearToPolynomialPass(degree=degree)]
        if bsgs:
            passes.append(LinearLayerBSGSPass(min_size=min_size))
        passes += [RescalingInsertionPass(strategy=strategy), RelinearizationInsertionPass(strategy=strategy)]
        if boot:
            passes.append(BootstrappingInsertionPass(level_threshold=level_threshold, strategy="minimal"))
        return PassPipeline(passes + [DeadCodeEliminationPass(), CostAnalysisPass()])

    return {
        "Baseline (eager)": build(False, False, False),
        "BSGS only": build(True, False, False),
        "Lazy only": build(False, True, False),
        "BSGS+Lazy": build(True, True, False),
        "Fully optimized": build(True, True, True),
    }


__all__ = [
    "HEPass",
    "PassPipeline",
    "InputPackingPass",
    "NonlinearToPolynomialPass",
    "LinearLayerBSGSPass",
    "RescalingInsertionPass",
    "RelinearizationInsertionPass",
    "BootstrappingInsertionPass",
    "DeadCodeEliminationPass",
    "CostAnalysisPass",
    "CostAnalysis",
    "PrintGraphPass",
    "default_pipeline",
    "comparison_pipelines",
]
