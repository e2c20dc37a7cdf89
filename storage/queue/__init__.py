"""The lease table as a work queue for distributed runs."""
