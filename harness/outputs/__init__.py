"""The ledger (claims.json) and the HTML report: records and how they read."""
