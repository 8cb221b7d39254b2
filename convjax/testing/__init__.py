"""Layer 2: gradient checking against finite differences and reference helpers.

``from convjax.testing import gradcheck``; see :mod:`convjax.testing.gradcheck`.
"""

from convjax.testing.gradcheck import (
    GradcheckError,
    GradcheckReport,
    Mismatch,
    default_tolerances,
    gradcheck,
)
