//! The signed identity option.
