//! The request as types.
