//! The OpenAI-compatible proxy: client keys, daily budgets and log delivery.

pub mod budget;
pub mod keys;
pub mod sink;
