"""The pieces of ``alignkit serve`` and ``alignkit reward-server``: the running KV-cache batch
(``batch``), the continuous-batching decode loop (``engine``), the OpenAI wire format
(``protocol``), the shared HTTP guard and body reader (``http``), the content guard hook of
``serve --guard`` (``moderation``) and the OpenRLHF reward server (``reward_server``). The app
itself is :mod:`alignkit.ai.server`."""
