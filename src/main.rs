//! The `c300x-bridge` command line: run | demo | sim | config | check.
fn main() {}
