"""Features: SAE loading and the pooled feature tables, cached on disk by content."""
