"""circuits_vision.models."""
