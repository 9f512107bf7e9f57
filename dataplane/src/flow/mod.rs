//! Per-worker flow table.
