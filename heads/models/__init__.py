"""The heads' estimators (``estimator.Head`` subclasses) and the networks they are built from.

One module per model: ``lasso``, ``lstm`` (valence/arousal over time), ``fusion`` (late-fusion emotion
classifier), ``correspond`` (music-video correspondence), ``mvf`` + ``mvf_nets`` (MVF networks) and
``autoencoder`` (their encoders' pre-training). A model takes arrays (or ``ClipData``) in ``fit`` and a
``ClipReader`` in ``predict_clips``: it never opens a store (``tests/test_architecture.py`` checks that no
module here imports ``mvfx.stores``); ``heads.data`` reads stores for it, ``heads.runs`` trains it.
Each module that registers a head is listed in ``saved.HEAD_MODULES``.
"""
