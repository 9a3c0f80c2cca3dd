"""Separating mixtures to files: planning the batch (:mod:`.plan`) and the per-mixture job
(:mod:`.job`)."""
