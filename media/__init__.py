"""The bottom layer: errors, probing, decoding and encoding of media files.

Nothing here imports extractors, pipeline, stores or heads.
"""
