"""Simulators: the CarRacing wrapper, exploration and baseline policies, parallel rollouts."""
