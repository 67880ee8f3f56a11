"""Tools that measure the studio and the model (not part of the product); see BENCHMARKS.md."""
