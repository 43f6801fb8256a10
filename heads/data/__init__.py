"""What the heads train on, read from a store and label files: labels and gold standards (``labels``), features
on a common time grid (``align``), clip datasets and their folds (``dataset``), music-video pairs (``pairs``)
and the MVF networks' cached inputs (``mvf_inputs``)."""
