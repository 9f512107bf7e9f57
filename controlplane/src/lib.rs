//! The gateway process: configuration and lifecycle.
