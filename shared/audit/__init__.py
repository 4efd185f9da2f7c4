"""The JSONL command audit log: one writer shared by the audit consumer and in-process loops."""
