"""circuits_vision.atlas."""
