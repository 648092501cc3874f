"""Policies made by the project's own pipeline: PPO experts, data collection, flow behaviour cloning,
training-time RTC, checkpoints, evaluation and modality measures."""
