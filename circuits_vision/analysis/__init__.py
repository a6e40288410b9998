"""circuits_vision.analysis."""
