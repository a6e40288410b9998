"""lucent 0.1.8's public API on the circuits_vision engine.

Replace ``lucent`` by ``circuits_vision.compat.lucent`` in the imports and the rest of a lucent
notebook runs unchanged::

    from circuits_vision.compat.lucent.optvis import render, objectives, param, transform
    from circuits_vision.compat.lucent.modelzoo import inceptionv1

    model = inceptionv1(pretrained=True).eval()
    images = render.render_vis(model, "mixed4a:476", show_image=False)   # [array [1, 128, 128, 3]]

What a user's code can observe is lucent's: layer names (``mixed3a_1x1_pre_relu_conv``), the
``"layer:n"`` strings, ``param_f -> (params, image_f)``, objectives of ``T``, shapes, dtypes and
value ranges, the list of numpy images ``render_vis`` returns. Underneath, ``render_vis`` hands the
optimisation to :func:`circuits_vision.optvis.render` (a forward that stops at the deepest layer
the objective reads, frozen weights, one batched optimisation, colour + transforms as one fused
resample) whenever the transforms and optimizer allow it, and otherwise runs an eager loop with
lucent's semantics (see :mod:`circuits_vision.compat.lucent.optvis.render`).

Randomness follows lucent: parameterizations, transforms and random model weights draw from
torch's global generator, so :func:`circuits_vision.compat.lucent.util.set_seed` fixes them.
"""

from circuits_vision.compat.lucent import misc, modelzoo, optvis, util

__all__ = ["misc", "modelzoo", "optvis", "util"]
