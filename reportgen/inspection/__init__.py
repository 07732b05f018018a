"""Looking inside a model: hooks, layers, activations, receptive fields, BatchNorm folding."""
