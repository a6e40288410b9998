"""circuits_vision.hooks."""
