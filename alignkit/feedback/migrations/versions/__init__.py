"""Migration scripts, applied in order by ``alignkit.feedback.db.init_db``."""
