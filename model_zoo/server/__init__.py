"""HTTP servers model-zoo runs for users: the reward server."""
