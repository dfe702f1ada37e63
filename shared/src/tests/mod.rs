//! Test support of the library's unit tests (compiled only for tests).

pub mod fakes;
