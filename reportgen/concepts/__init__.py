"""Set-level explanations on numpy/tensors (no report blocks here): confused pairs (:mod:`.confusions`),
SpRAy clusters of attribution maps (:mod:`.spray`), CRAFT concepts by NMF of crop activations (:mod:`.craft`)."""
