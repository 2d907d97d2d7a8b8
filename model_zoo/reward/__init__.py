"""Reward scoring for RLHF with InternLM2-Reward models."""
