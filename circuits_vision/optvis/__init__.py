"""circuits_vision.optvis."""
