"""The score tier's material: stored per-detector outputs and the blocks to fuse them.

- :mod:`.outputs`: the infer stage's files (per-detector score columns, a
  float16 map stack per detector, train-split scores) and their reader.
- :mod:`.fusion`: the building blocks kinds compose their score tier from
  (normalisation, smoothing, pooling, weighted fusion).

Below :mod:`diffad.methods` (each kind's score tier uses them); what the
evaluate rule does with them is :mod:`diffad.evaluation`. numpy / scipy only:
the evaluate rule runs in the light environment.
"""
