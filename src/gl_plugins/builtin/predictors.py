"""Built-in predictors: the four checks ``gl predict`` runs on every model.

Each lives in its own module under ``gl_plugins.predictors``; they are
imported only when predictions are first needed. ``trylast`` lets a
third-party plugin replace one by registering the same name.
"""

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def gl_register_predictors(register):
    from ..predictors.ffn_ratio import FfnRatio
    from ..predictors.kv_sharing import KvSharing
    from ..predictors.shape_fallback import ShapeFallback
    from ..predictors.sliding_window import SlidingWindow

    register(FfnRatio())
    register(SlidingWindow())
    register(KvSharing())
    register(ShapeFallback())
