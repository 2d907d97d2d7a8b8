"""Exports of pulled checkpoints for serving engines (vLLM, LMDeploy), with no checkpoint code.

Nothing is imported here: ``model_zoo.export.vllm`` holds the export, ``tokenizer_json`` the
tokenizer converter, ``hf_config`` and ``vllm_plugin`` the config classes engines need.
"""
