"""One module per `mvfx train` command, from a store and labels to a run folder: ``regression`` (lasso, lstm),
``fusion``, ``correspond``, ``mvf`` (mvf, autoencoder); ``folder`` writes every run folder the same way
(config.json, predictions.csv, plots, model/, metrics.json)."""
