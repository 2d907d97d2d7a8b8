"""HTTP servers model-zoo runs for users: the reward server.

``reward_server.RewardServer`` (an asyncio event loop; ``http11`` parses requests) in front of
``scheduler.BatchScheduler`` (one thread owns the model and merges concurrent requests);
``protocol`` holds the routes, limits and JSON errors; ``runtimes`` the routes in vLLM's, SGLang's
and LMDeploy's shapes. ``model-zoo serve-reward`` runs it.
"""
