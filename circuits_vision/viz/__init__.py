"""circuits_vision.viz."""
