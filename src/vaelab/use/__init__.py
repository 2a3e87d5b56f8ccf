"""Using a trained model: reconstruct, encode/decode, sample, interpolate, evaluate, OOD scores, report."""
