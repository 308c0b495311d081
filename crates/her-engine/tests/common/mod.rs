//! The engine tests' fixtures: her-testkit, with the tiny model written under
//! this test binary's scratch folder.
#![allow(dead_code)]

pub use her_testkit::*;

pub fn tiny() -> &'static Tiny {
    tiny_in(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
}
