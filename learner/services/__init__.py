"""Writes of learner, one module per subdomain."""
