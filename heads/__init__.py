"""Heads trained on cached features.

- ``models/``: the estimators (LASSO, LSTM, late fusion, correspondence, MVF networks, autoencoder); they never
  open a store;
- ``data/``: labels and gold standards, alignment, datasets and folds, pairs, the MVF inputs, read from stores;
- ``runs/``: one module per `mvfx train` command and the run-folder writer they share;
- here: the head base and saved-model format (``estimator``), the training loop (``torch_fit``), threads,
  metrics, plots, reading runs back (``report``), retrieval, and prediction (``predict``, ``application``).
"""
