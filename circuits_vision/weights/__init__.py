"""circuits_vision.weights."""
