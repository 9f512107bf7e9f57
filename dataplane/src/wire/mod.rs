//! Wire views (see module docs in each file).
