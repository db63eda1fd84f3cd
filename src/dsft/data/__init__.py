"""Data: read any seed format, normalise to Conversation, validate, clean, split, and account for it all.

Modules, in pipeline order: ``readers`` (files -> raw records with file:line), ``formats`` (raw record ->
Conversation), ``validate`` (problems per record), ``ingest`` (the three together, rejections kept),
``clean`` / ``near_dedup`` / ``relevance`` / ``semantic`` (pure steps returning kept + removed-with-reason),
``tokens`` (token counts with the model tokenizer), ``split``, ``augment`` (with ``table_templates``,
``synonyms`` and the ``endpoint`` client), ``reasoning_policy``, ``report`` and ``pipeline`` (``prepare`` /
``load_prepared``); ``distill`` makes records from a teacher model's answers. ``samples`` ships the demo
data. See docs/data.md.
"""

# Every module of the package logs to logging.getLogger(__name__), below this logger, which a caller names to quiet
# the package's warnings (dsft.training.ranks.warnings_for_job: said by a launched job's main process only).
LOGGER = __name__
