"""Training: optimizer and schedule, callbacks, distribution strategies."""
