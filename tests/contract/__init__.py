"""The contract suite of the storage ports (tokenry.store.ports): memory and PostgreSQL."""
