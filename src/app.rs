//! Wiring: builds the components from `Config`, hands each its part, and shuts down gracefully.
