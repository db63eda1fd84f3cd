"""OpenAI-compatible serving: the FastAPI app, the batching transformers engine, and launchers.

``app`` (routes, auth, checks) -> ``engine`` (bounded queue, batching worker) -> ``generation`` (the
token loop, with ``sampling`` and ``decoding``); ``serving_model`` loads a model or run with its named
adapters; ``vllm`` builds the equivalent ``vllm serve`` command; ``k8s`` writes deployment files;
``chat`` is the terminal client. See docs/serve.md.
"""
