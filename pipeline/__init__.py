"""Corpus discovery, probing, decode-once and scheduling of extraction runs."""
