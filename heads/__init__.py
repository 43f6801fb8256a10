"""Heads trained on cached features.

- ``models/``: the estimators (LASSO, LSTM, late fusion, correspondence, MVF networks, autoencoder); they never
  open a store;
- ``data/``: labels and gold standards, alignment, datasets and folds, pairs, the MVF inputs, read from stores;
- ``runs/``: one module per `mvfx train` command, the run-folder writer and the cross-validation loop they share;
- here: the head base (``estimator``), the saved-model format (``saved``), the features' provenance
  (``provenance``), the training loop (``torch_fit``), threads, metrics, plots, reading runs back (``report``),
  retrieval, and prediction (``predict``, ``application``).
"""
