"""Training: the θ → σ → w mapping, the network evaluators, losses, optimizers and the loop.

Calling the package, ``memspice.train(calibration, x, labels, ...)``, runs
:func:`memspice.api.train`: the package and the public function share the name
``memspice.train``, so the package forwards calls to the function.
"""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from memspice.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
