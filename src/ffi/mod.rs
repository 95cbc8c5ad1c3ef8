//! The C ABI (see issue: C layer).
