"""circuits_vision.stimuli."""
